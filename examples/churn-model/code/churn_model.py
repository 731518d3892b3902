"""The walkthrough's churn model: churn probability as a logistic curve over tenure.

Deliberately free of ML libraries so any MLflow client can load it: `mlflow.pyfunc.load_model`
imports this module (the MLmodel file names it) and calls `_load_pyfunc` with the weights file.
"""

import json
import math


class ChurnModel:
    def __init__(self, weights):
        self.intercept = weights["intercept"]
        self.slope = weights["tenure_months"]

    def predict(self, model_input, params=None):
        """One churn probability per row of a DataFrame with a `tenure_months` column."""
        return [
            round(1.0 / (1.0 + math.exp(-(self.intercept + self.slope * float(months)))), 4)
            for months in model_input["tenure_months"]
        ]


def _load_pyfunc(path):
    with open(path, encoding="utf-8") as weights:
        return ChurnModel(json.load(weights))
