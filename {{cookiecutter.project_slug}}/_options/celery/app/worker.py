"""The task queue's worker: `celery -A app.worker worker` runs this project's CPU jobs.

It reads the same settings as the server (CELERY_BROKER_URL) and imports each job's function
from the project's code (see app.core.task_queue).
"""

from app.core.task_queue import celery_app
from app.settings import Settings

celery = celery_app(Settings().celery_broker_url)
