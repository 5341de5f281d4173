"""The plugin's own admin HTTP API and the `mlflow.app.client` admin client."""
