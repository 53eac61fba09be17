"""`python -m scoring.spark` (or `spark-submit scoring/spark/__main__.py`)."""

from scoring.spark.job import main

if __name__ == "__main__":
    raise SystemExit(main())
