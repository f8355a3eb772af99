"""Sans-IO policies and state machines shared by the node and the relay: they take `now` and
injected secrets and randomness, and return decisions and datagrams; the asyncio code around them
does the sending."""

from tomproto.core.admission import Action, AdmissionPolicy, AdmissionSettings, Verdict
from tomproto.core.budget import (
    PacketByteBudget,
    SourceBudgets,
    TokenBucket,
    source_key,
)
from tomproto.core.relay_registration import RegistrationState, RelayRegistration
from tomproto.core.relay_server import Outgoing, RelayCore, RelaySettings
from tomproto.core.tokens import RetryToken, TokenError, check_token, mint_token

__all__ = [
    "Action",
    "AdmissionPolicy",
    "AdmissionSettings",
    "Outgoing",
    "PacketByteBudget",
    "RegistrationState",
    "RelayCore",
    "RelayRegistration",
    "RelaySettings",
    "RetryToken",
    "SourceBudgets",
    "TokenBucket",
    "TokenError",
    "Verdict",
    "check_token",
    "mint_token",
    "source_key",
]
