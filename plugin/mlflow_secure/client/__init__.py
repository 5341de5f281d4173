"""Client-side MLflow plugins: request auth (``MLFLOW_TRACKING_AUTH=secure``) and context headers.

They live apart from the server modules so that an ML engineer's ``import mlflow`` pulls in
nothing of the server (Flask app, OPA supervision) just because the plugin is installed.
"""
