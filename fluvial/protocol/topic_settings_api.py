"""fluvial's SC API for a topic's fluvial-only settings a client needs: its content type.

Not part of Fluvio's protocol: key 9002 on the SC's public port, version 0, not advertised in
ApiVersions (like ``producer_api``'s 9001); an official client never sends it.
docs/internal-protocol.md has the layout::

    TopicSettingsRequest  => topic:str
    TopicSettingsResponse => error_code:ErrorCode  content_type:str   ("" = none)
"""

from __future__ import annotations

from typing import ClassVar

from fluvial.errors import Error
from fluvial.protocol.api import Request
from fluvial.protocol.codec import ERROR_CODE, STR, message, wire

TOPIC_SETTINGS_KEY = 9002


@message
class TopicSettingsResponse:
    error_code: Error = wire(ERROR_CODE)
    content_type: str = wire(STR)


@message
class TopicSettingsRequest(Request):
    API_KEY: ClassVar[int] = TOPIC_SETTINGS_KEY
    Response: ClassVar[type] = TopicSettingsResponse

    topic: str = wire(STR)


__all__ = ["TOPIC_SETTINGS_KEY", "TopicSettingsRequest", "TopicSettingsResponse"]
