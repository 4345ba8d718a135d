"""Every error we raise on purpose, in one documented tree (the model: httpx's ``_exceptions.py``).

Tree::

    EwsError                    root: ours, and its message is written for a person
    ├── InvalidInput            input that cannot be honoured (also a ValueError)
    │   ├── FieldError          ``field`` names what is wrong (the API answers 422 naming it)
    │   │   ├── TokenError          a token request (service/tokens.py)
    │   │   ├── SubscriberError     subscriber data (service/subscribers.py)
    │   │   │   └── PhoneTaken      the number is registered already (409)
    │   │   └── ExerciseError       a request to start an exercise (service/exercises.py)
    │   ├── RulesError          a rules document; ``errors`` lists (field, message) (alerts/rules.py)
    │   ├── TemplateError       an SMS template file (alerts/messages.py)
    │   ├── ScenarioError       a scenario file (sensors/scenario_files.py)
    │   ├── LineError           a gateway source line that is not a sample (sensors/gateway/)
    │   ├── InvalidPhone        not a phone number (service/phones.py)
    │   └── UsageError          a command-line argument that cannot be honoured (exit status 2)
    ├── Conflict                the request clashes with what is stored (the API answers 409)
    │   ├── AlreadyAcknowledged an alert seen before (service/alerting.py)
    │   ├── AlreadyClosed       an alert closed before (service/alert_control.py)
    │   ├── AlreadyEnded        an exercise ended before (service/exercises.py)
    │   ├── StationBusy         a station already in a running exercise (service/exercises.py)
    │   └── SirenBusy           a siren test while it sounds for an alert (service/sirens/operators.py)
    ├── ConfigError             a setting is missing or wrong (config/settings.py)
    ├── CommandFailed           a command could not do its work (exit status 1)
    ├── StartupError            a part of ``ews run`` could not start
    │   └── BrokerStartError    the embedded broker (usually: its port is taken) (service/broker.py)
    └── SmsError                a send that was not a plain success
        └── ProviderError       Transient, Permanent, Unknown (service/dispatch/providers.py: they mask numbers)

The modules named above import their classes from here, so ``from service.tokens import
TokenError`` keeps working. Translated at the boundary only: ``service/http/errors.py``
answers a ``FieldError`` as 422 naming the field and a ``Conflict`` as 409 when a view lets
one through, and ``service/cli.py`` prints any ``EwsError`` as one line (exit status
``exit_status``, 2 unless the class says otherwise).
"""

from __future__ import annotations


class EwsError(Exception):
    """Root of every error this project raises on purpose."""

    exit_status = 2  # what ``ews`` exits with when a command ends with this error


class InvalidInput(EwsError, ValueError):
    """Input that cannot be honoured; the message says why."""


class FieldError(InvalidInput):
    """Input wrong in one ``field``: the API answers 422 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TokenError(FieldError):
    """A token request that cannot be honoured: ``field`` names what is wrong."""


class SubscriberError(FieldError):
    """Bad subscriber data: ``field`` names what is wrong."""


class PhoneTaken(SubscriberError):
    """The phone number is already registered (answered 409)."""

    def __init__(self, phone: str, existing_id: int | None = None) -> None:
        super().__init__("phone", "is already registered")
        self.phone = phone
        self.existing_id = existing_id


class ExerciseError(FieldError):
    """A request to start an exercise is wrong in ``field`` (the API answers 422)."""


class RulesError(InvalidInput):
    """A rules document is invalid; ``errors`` lists ``(field, message)`` with dotted field paths."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors))


class TemplateError(InvalidInput):
    """A template file is missing a key, or a template names an unknown placeholder."""


class ScenarioError(InvalidInput):
    """A scenario file is missing or wrong; the message says where."""


class LineError(InvalidInput):
    """A source line that is not a sample."""


class InvalidPhone(InvalidInput):
    """The text is not a valid phone number; the message says why."""


class UsageError(InvalidInput):
    """A command-line argument that cannot be honoured; the message says which and why."""


class Conflict(EwsError):
    """The request clashes with the stored state (the API answers 409)."""


class AlreadyAcknowledged(Conflict):
    """The alert was acknowledged before (the API answers 409)."""


class AlreadyClosed(Conflict):
    """The alert was closed before: by its readings, or by hand (the API answers 409)."""


class AlreadyEnded(Conflict):
    """The exercise has ended before (the API answers 409)."""


class StationBusy(Conflict):
    """A station is already in a running exercise (the API answers 409)."""


class SirenBusy(Conflict):
    """A ``test`` while the siren sounds for an alert (the API answers 409)."""


class ConfigError(EwsError):
    """A setting is missing or wrong; the message says which and how to fix it."""


class CommandFailed(EwsError):
    """A command could not do its work (e.g. the broker is unreachable); the message says why."""

    exit_status = 1


class StartupError(EwsError):
    """A part of the service could not start; the message says why and how to fix it."""


class BrokerStartError(StartupError):
    """The embedded broker could not start (usually: the port is taken)."""


class SmsError(EwsError):
    """An SMS send that was not a plain success (service/dispatch/providers.py: ProviderError)."""
