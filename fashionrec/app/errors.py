"""What every command module shares: one-line errors for services that cannot be reached or refuse the
credentials (:class:`AccessError`, exit status 3), and the root command's ``--output json``.

The lowest module of :mod:`fashionrec.app`'s commands: ``cli.py``, ``serving_commands.py``,
``experiment_commands.py`` and ``simulate_commands.py`` import it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from fashionrec.app.client import RecommendError
from fashionrec.messages import one_line

EXIT_NO_ACCESS = 3  # a service could not be reached or refused the credentials (`fashionrec --help` lists them)
REASON_CHARS = 300  # of a service's own message quoted in a one-line error
GOOGLE_LOGIN_HINT = "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS"
TRITON_UNREACHABLE = frozenset({"StatusCode.UNAVAILABLE"})  # tritonclient's status() of a server not there
TRITON_REFUSED = frozenset({"StatusCode.UNAUTHENTICATED", "StatusCode.PERMISSION_DENIED", "401", "403"})


class AccessError(click.ClickException):
    """A service (Triton, the shop, Kubeflow, Vertex AI, Cloud Storage) could not be reached or refused the
    credentials: one line naming it and the cause, and exit status 3, so that a script can tell it from a
    failed command (1) or a wrong command line (2), and retry or fix the credentials."""

    exit_code = EXIT_NO_ACCESS


def access_failure(error: BaseException, triton: str = "Triton", google: str = "Google Cloud") -> AccessError | None:
    """``error`` as an AccessError when it means that a service could not be reached or refused the
    credentials, else None. ``triton`` and ``google`` name the service the message blames for a
    tritonclient error and for a Google API or auth error (e.g. "Triton at host:8001", a gs:// repository).
    An unclassified error is judged by its cause (the Vertex SDK wraps API errors in RuntimeError)."""
    from google.api_core import exceptions as google_api
    from google.auth import exceptions as google_auth
    from tritonclient.utils import InferenceServerException

    reason = one_line(error, REASON_CHARS)
    if isinstance(error, google_auth.DefaultCredentialsError):
        return AccessError(f"no Google credentials for {google} ({GOOGLE_LOGIN_HINT}): {reason}")
    if isinstance(error, (google_auth.GoogleAuthError, google_api.Unauthorized, google_api.Forbidden)):
        return AccessError(f"{google} refused the credentials: {reason}")
    if isinstance(error, (google_api.ServiceUnavailable, google_api.RetryError)):
        return AccessError(f"cannot reach {google}: {reason}")
    if isinstance(error, InferenceServerException):
        return _triton_access(error, triton)
    if isinstance(error, RecommendError):  # the client's message names Triton, its address and protocol
        return _recommend_access(error, reason)
    if isinstance(error, (ConnectionError, socket.gaierror, TimeoutError)):
        return AccessError(f"cannot reach {triton}: {reason}")
    return access_failure(error.__cause__, triton, google) if error.__cause__ is not None else None


def _triton_access(error: Any, triton: str) -> AccessError | None:
    """A tritonclient error that says the server is not there, or refuses the caller (an auth proxy)."""
    status, reason = str(error.status()), one_line(error.message(), REASON_CHARS)
    if status in TRITON_UNREACHABLE:
        return AccessError(f"cannot reach {triton}: {reason}")
    if status in TRITON_REFUSED:
        return AccessError(f"{triton} refused the request ({status}): {reason}")
    return None


def _recommend_access(error: RecommendError, reason: str) -> AccessError | None:
    """A client error whose cause says that Triton is not there (a refused connection, UNAVAILABLE after the
    client's retries) or refuses the caller."""
    from tritonclient.utils import InferenceServerException

    cause = error.__cause__
    status = str(cause.status()) if isinstance(cause, InferenceServerException) else None
    if status in TRITON_REFUSED:
        return AccessError(f"Triton refused the request ({status}): {reason}")
    if isinstance(cause, OSError) or status in TRITON_UNREACHABLE:
        return AccessError(reason if reason.startswith("cannot reach") else f"cannot reach Triton: {reason}")
    return None


def command_error(error: Exception, triton: str = "Triton", google: str = "Google Cloud") -> click.ClickException:
    """``error`` as the command's one-line error: an AccessError (exit 3) when it is one, else exit 1."""
    return access_failure(error, triton, google) or click.ClickException(str(error))


@contextmanager
def access_errors(triton: str = "Triton", google: str = "Google Cloud") -> Iterator[None]:
    """Turn the errors of an unreachable or refusing service into AccessError; let every other error pass."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as error:
        failure = access_failure(error, triton, google)
        if failure is None:
            raise
        raise failure from error


def json_output() -> bool:
    """Whether the root command was given ``--output json`` (a command run on its own: no)."""
    context = click.get_current_context(silent=True)
    return context is not None and context.find_root().params.get("output") == "json"


def echo_json(document: object) -> None:
    """One JSON document on stdout (``... --output json | jq`` reads it); progress stays on stderr."""
    click.echo(json.dumps(document, indent=2, default=str))


