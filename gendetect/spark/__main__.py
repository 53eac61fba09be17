"""`python -m gendetect.spark` (or `spark-submit gendetect/spark/__main__.py`)."""

from gendetect.spark.job import main

if __name__ == "__main__":
    raise SystemExit(main())
