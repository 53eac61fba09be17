"""The scoring surfaces above the core, side by side: batch scoring of a file
(scoring.batch, `gendetect score`), the bundle as an MLflow pyfunc model and
its logging (scoring.pyfunc, scoring.model_log) and the Spark engine
(scoring.spark, `python -m scoring.spark`). The logged pyfunc model carries
this package and gendetect as its code, so nothing here may import the job
or web layers."""
