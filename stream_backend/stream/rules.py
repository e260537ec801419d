"""Stream's rules and limits, as its spec and docs state them (../shared/docs/stream-facts.md):
what a body must respect so that a request Stream would refuse halfway through never writes
its first half. Plain constants: validation.py and mirror/bodies.py turn them into checks."""

# Stream user ids: letters, digits, "@", "_" and "-", at most 255 (MessageRequest.id's maxLength
# in Stream's spec). Message ids follow the same rule: they end up in URL paths
# (`/messages/{id}`) that the SDK does not escape.
ID_PATTERN = r"^[A-Za-z0-9@_-]+$"
MAX_ID_LENGTH = 255
# Channel types and ids: at most 64 characters (Stream's spec); ids may also hold "!", as the
# ids Stream derives from members do (`!members-...`).
CHANNEL_TYPE_PATTERN = r"^[A-Za-z0-9_-]+$"
CHANNEL_ID_PATTERN = r"^[A-Za-z0-9@!_-]+$"
MAX_CHANNEL_ID_LENGTH = 64
DEFAULT_CHANNEL_TYPE = "messaging"
# Stream derives a distinct channel's id from its members, with this prefix.
DISTINCT_PREFIX = "!members-"

# Stream limits custom data to 5 KB: per user object, per channel, per message.
MAX_CUSTOM_DATA_BYTES = 5 * 1024

# Stream's limit on users per upsert call, and on members added or removed per call; and on
# members given with a channel (ChannelInput.members' maxItems), so a distinct channel, whose
# id Stream derives from its members, has at most 100.
STREAM_BATCH_SIZE = 100
MAX_DISTINCT_MEMBERS = 100
# ... and at least 2: Stream answers fewer with 400 code 4 "When using member based IDs specify
# at least 2 members" (its SDKs' own tests; docs/stream-behaviour.md).
MIN_DISTINCT_MEMBERS = 2
# Ours: a channel with an id takes the rest in later calls; the cap bounds the calls a request makes.
MAX_MEMBERS = 1000

# The custom field that marks the messages the mirror sends (mirror/origin.py).
ORIGIN_FIELD = "primary_origin"

# Message fields Stream gives a meaning to: the properties of MessageRequest and MessageResponse
# in Stream's spec (a test checks this against it), and the mirror's own mark. An update may
# set `text` and custom fields, not these.
RESERVED_MESSAGE_FIELDS = frozenset(
    {
        "attachments",
        "cid",
        "command",
        "created_at",
        "custom",
        "deleted_at",
        "deleted_for_me",
        "deleted_reply_count",
        "draft",
        "html",
        "i18n",
        "id",
        "image_labels",
        "latest_reactions",
        "member",
        "mentioned_channel",
        "mentioned_group_ids",
        "mentioned_groups",
        "mentioned_here",
        "mentioned_roles",
        "mentioned_users",
        "message_text_updated_at",
        "mml",
        "moderation",
        "own_reactions",
        "parent_id",
        "pin_expires",
        "pinned",
        "pinned_at",
        "pinned_by",
        "poll",
        "poll_id",
        "quoted_message",
        "quoted_message_id",
        "reaction_counts",
        "reaction_groups",
        "reaction_scores",
        "reminder",
        "reply_count",
        "restricted_visibility",
        "shadowed",
        "shared_location",
        "show_in_channel",
        "silent",
        "thread_participants",
        "type",
        "updated_at",
        "user",
        "user_id",
        ORIGIN_FIELD,  # only the mirror sets it
    }
)

# Fields of Stream's ChannelInput, and the channel's read-only fields: these are not custom
# data, and letting `custom_data` set them would override the members we send or break
# Stream's schema (`frozen: "yes"`).
RESERVED_CHANNEL_FIELDS = frozenset(
    {
        "auto_translation_enabled",
        "auto_translation_language",
        "cid",
        "config",
        "config_overrides",
        "created_at",
        "created_by",
        "created_by_id",
        "custom",
        "deleted_at",
        "disabled",
        "filter_tags",
        "frozen",
        "id",
        "invites",
        "member_count",
        "members",
        "team",
        "truncated_by_id",
        "type",
        "updated_at",
    }
)
