"""Group payloads (spec/protocol.md §6): the group values and the GroupPayload enum.

Rules: GroupPayload is a Rust enum of struct variants, each written as a one-entry map
{"Variant": [fields]}; `Message` is a newtype variant around GroupMessage, which gives the same
shape. Each variant travels in the envelope whose msg_type is "Group" + the variant name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from tomproto.wire.codec import U32, U64, Bytes24, Variants
from tomproto.wire.payloads import EncryptedPayload

__all__ = [
    "MAX_GROUP_MEMBERS",
    "GroupMemberRole",
    "LeaveReason",
    "GroupMember",
    "GroupInfo",
    "GroupMessage",
    "GroupMessageContent",
    "EncryptedSenderKey",
    "GROUP_PAYLOAD",
    "GROUP_VARIANTS",
]

MAX_GROUP_MEMBERS = 50


class GroupMemberRole(str, enum.Enum):
    Admin = "Admin"
    Member = "Member"


class LeaveReason(str, enum.Enum):
    Voluntary = "Voluntary"
    Kicked = "Kicked"
    Timeout = "Timeout"


@dataclass(frozen=True, slots=True)
class GroupMember:
    node_id: str
    username: str
    joined_at: U64
    role: GroupMemberRole


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group_id: str
    name: str
    hub_relay_id: str
    backup_hub_id: str | None
    members: tuple[GroupMember, ...]
    created_by: str
    created_at: U64
    last_activity_at: U64
    max_members: U64
    shadow_id: str | None
    candidate_id: str | None
    invite_only: bool


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A group chat message; also the `Message` variant of GroupPayload.

    When `encrypted`, `sender_username` and `text` are empty and `ciphertext` holds msgpack
    [username, text] under the sender's key of epoch `key_epoch`. `seq` is assigned by the hub
    (0 = not yet assigned)."""

    VARIANT: ClassVar[str] = "Message"
    group_id: str
    message_id: str
    sender_id: str
    sender_username: str
    text: str
    ciphertext: bytes
    nonce: Bytes24
    key_epoch: U32
    encrypted: bool
    sent_at: U64
    sender_signature: bytes
    seq: U64


@dataclass(frozen=True, slots=True)
class GroupMessageContent:
    """The plaintext inside an encrypted GroupMessage."""

    username: str
    text: str


@dataclass(frozen=True, slots=True)
class EncryptedSenderKey:
    recipient_id: str
    encrypted_key: EncryptedPayload


@dataclass(frozen=True, slots=True)
class GroupCreate:
    VARIANT: ClassVar[str] = "Create"
    group_name: str
    creator_username: str
    initial_members: tuple[str, ...]
    invite_only: bool


@dataclass(frozen=True, slots=True)
class GroupCreated:
    VARIANT: ClassVar[str] = "Created"
    group: GroupInfo


@dataclass(frozen=True, slots=True)
class GroupInvite:
    VARIANT: ClassVar[str] = "Invite"
    group_id: str
    group_name: str
    inviter_id: str
    inviter_username: str


@dataclass(frozen=True, slots=True)
class GroupJoin:
    VARIANT: ClassVar[str] = "Join"
    group_id: str
    username: str


@dataclass(frozen=True, slots=True)
class GroupSync:
    VARIANT: ClassVar[str] = "Sync"
    group: GroupInfo
    recent_messages: tuple[GroupMessage, ...]


@dataclass(frozen=True, slots=True)
class GroupLeave:
    VARIANT: ClassVar[str] = "Leave"
    group_id: str


@dataclass(frozen=True, slots=True)
class GroupMemberJoined:
    VARIANT: ClassVar[str] = "MemberJoined"
    group_id: str
    member: GroupMember


@dataclass(frozen=True, slots=True)
class GroupMemberLeft:
    VARIANT: ClassVar[str] = "MemberLeft"
    group_id: str
    node_id: str
    username: str
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class GroupDeliveryAck:
    VARIANT: ClassVar[str] = "DeliveryAck"
    group_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class GroupHubMigration:
    VARIANT: ClassVar[str] = "HubMigration"
    group_id: str
    new_hub_id: str
    old_hub_id: str


@dataclass(frozen=True, slots=True)
class GroupHubHeartbeat:
    VARIANT: ClassVar[str] = "HubHeartbeat"
    group_id: str
    member_count: U64


@dataclass(frozen=True, slots=True)
class GroupSenderKeyDistribution:
    VARIANT: ClassVar[str] = "SenderKeyDistribution"
    group_id: str
    sender_id: str  # the spec's `from`
    epoch: U32
    encrypted_keys: tuple[EncryptedSenderKey, ...]


@dataclass(frozen=True, slots=True)
class GroupHubPing:
    VARIANT: ClassVar[str] = "HubPing"
    group_id: str


@dataclass(frozen=True, slots=True)
class GroupHubPong:
    VARIANT: ClassVar[str] = "HubPong"
    group_id: str


@dataclass(frozen=True, slots=True)
class GroupHubShadowSync:
    VARIANT: ClassVar[str] = "HubShadowSync"
    group_id: str
    members: tuple[GroupMember, ...]
    candidate_id: str | None
    config_version: U64


@dataclass(frozen=True, slots=True)
class GroupCandidateAssigned:
    VARIANT: ClassVar[str] = "CandidateAssigned"
    group_id: str


@dataclass(frozen=True, slots=True)
class GroupHubUnreachable:
    VARIANT: ClassVar[str] = "HubUnreachable"
    group_id: str


@dataclass(frozen=True, slots=True)
class GroupKickMember:
    VARIANT: ClassVar[str] = "KickMember"
    group_id: str
    target_id: str


@dataclass(frozen=True, slots=True)
class GroupInviteMember:
    VARIANT: ClassVar[str] = "InviteMember"
    group_id: str
    target_id: str


@dataclass(frozen=True, slots=True)
class GroupUpdateMemberRole:
    VARIANT: ClassVar[str] = "UpdateMemberRole"
    group_id: str
    target_id: str
    new_role: GroupMemberRole


@dataclass(frozen=True, slots=True)
class GroupMemberRoleChanged:
    VARIANT: ClassVar[str] = "MemberRoleChanged"
    group_id: str
    node_id: str
    new_role: GroupMemberRole


@dataclass(frozen=True, slots=True)
class GroupSyncRequest:
    VARIANT: ClassVar[str] = "SyncRequest"
    group_id: str
    since_seq: U64


@dataclass(frozen=True, slots=True)
class GroupSyncResponse:
    VARIANT: ClassVar[str] = "SyncResponse"
    group_id: str
    messages: tuple[GroupMessage, ...]
    latest_seq: U64


# Classes, each with a `VARIANT: ClassVar[str]`.
GROUP_VARIANTS: tuple[type[Any], ...] = (
    GroupCreate,
    GroupCreated,
    GroupInvite,
    GroupJoin,
    GroupSync,
    GroupMessage,
    GroupLeave,
    GroupMemberJoined,
    GroupMemberLeft,
    GroupDeliveryAck,
    GroupHubMigration,
    GroupHubHeartbeat,
    GroupSenderKeyDistribution,
    GroupHubPing,
    GroupHubPong,
    GroupHubShadowSync,
    GroupCandidateAssigned,
    GroupHubUnreachable,
    GroupKickMember,
    GroupInviteMember,
    GroupUpdateMemberRole,
    GroupMemberRoleChanged,
    GroupSyncRequest,
    GroupSyncResponse,
)

GROUP_PAYLOAD = Variants("GroupPayload", GROUP_VARIANTS)
__all__ += [cls.__name__ for cls in GROUP_VARIANTS if cls.__name__ not in __all__]
