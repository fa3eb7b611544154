"""The stages behind train.py, predict.py and prepare_data.py: settings, splits, scoring, evaluation, reports."""
