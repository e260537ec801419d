"""What only the HTTP service needs: the route table (routing.py) and the OpenAPI document
(openapi.py, models.py), who may call (auth.py), every error as JSON (errors.py), what each
request goes through (hooks.py), log lines (logs.py), the Flask commands (commands.py) and
gunicorn's hooks (gunicorn_config.py). Flask is imported here and in app.py, nowhere else."""
