"""The SMS side's routes: subscribers, notifications, broadcasts (``/api/v1``) and the Twilio webhooks.

Each resource has its own module (``subscribers_api``, ``notifications_api``,
``broadcasts_api``, ``twilio_webhooks``); this lists them in their OpenAPI document order.
"""

from __future__ import annotations

from service.http import broadcasts_api, notifications_api, subscribers_api, twilio_webhooks


def create_blueprint(_services):
    """The API blueprints (subscribers, notifications, broadcasts) and the Twilio webhooks."""
    return [subscribers_api.blp, notifications_api.blp, broadcasts_api.blp, twilio_webhooks.blp]
