import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OperationMetadata(_message.Message):
    __slots__ = ("state", "job_type", "progress", "attempt", "max_attempts", "create_time", "start_time", "update_time", "end_time", "next_attempt_time", "cancel_requested", "last_attempt_error", "poll_after", "labels", "priority", "expire_time", "webhook")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[OperationMetadata.State]
        QUEUED: _ClassVar[OperationMetadata.State]
        RUNNING: _ClassVar[OperationMetadata.State]
        SUCCEEDED: _ClassVar[OperationMetadata.State]
        FAILED: _ClassVar[OperationMetadata.State]
        CANCELLED: _ClassVar[OperationMetadata.State]
    STATE_UNSPECIFIED: OperationMetadata.State
    QUEUED: OperationMetadata.State
    RUNNING: OperationMetadata.State
    SUCCEEDED: OperationMetadata.State
    FAILED: OperationMetadata.State
    CANCELLED: OperationMetadata.State
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_ERROR_FIELD_NUMBER: _ClassVar[int]
    POLL_AFTER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    state: OperationMetadata.State
    job_type: str
    progress: Progress
    attempt: int
    max_attempts: int
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    cancel_requested: bool
    last_attempt_error: _status_pb2.Status
    poll_after: _duration_pb2.Duration
    labels: _containers.ScalarMap[str, str]
    priority: int
    expire_time: _timestamp_pb2.Timestamp
    webhook: WebhookDelivery
    def __init__(self, state: _Optional[_Union[OperationMetadata.State, str]] = ..., job_type: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., last_attempt_error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., poll_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook: _Optional[_Union[WebhookDelivery, _Mapping]] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("url", "state", "webhook_id", "attempts", "last_http_status", "last_error", "next_attempt_time", "end_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[WebhookDelivery.State]
        STATE_WAITING: _ClassVar[WebhookDelivery.State]
        STATE_PENDING: _ClassVar[WebhookDelivery.State]
        STATE_DELIVERED: _ClassVar[WebhookDelivery.State]
        STATE_FAILED: _ClassVar[WebhookDelivery.State]
    STATE_UNSPECIFIED: WebhookDelivery.State
    STATE_WAITING: WebhookDelivery.State
    STATE_PENDING: WebhookDelivery.State
    STATE_DELIVERED: WebhookDelivery.State
    STATE_FAILED: WebhookDelivery.State
    URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    url: str
    state: WebhookDelivery.State
    webhook_id: str
    attempts: int
    last_http_status: int
    last_error: str
    next_attempt_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., state: _Optional[_Union[WebhookDelivery.State, str]] = ..., webhook_id: _Optional[str] = ..., attempts: _Optional[int] = ..., last_http_status: _Optional[int] = ..., last_error: _Optional[str] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("completed", "total", "stage")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    completed: int
    total: int
    stage: str
    def __init__(self, completed: _Optional[int] = ..., total: _Optional[int] = ..., stage: _Optional[str] = ...) -> None: ...
