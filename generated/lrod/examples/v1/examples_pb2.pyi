import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SleepJob(_message.Message):
    __slots__ = ("duration", "steps")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    steps: int
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., steps: _Optional[int] = ...) -> None: ...

class SleepResult(_message.Message):
    __slots__ = ("steps_done",)
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    steps_done: int
    def __init__(self, steps_done: _Optional[int] = ...) -> None: ...

class FlakyJob(_message.Message):
    __slots__ = ("fail_times", "permanent")
    FAIL_TIMES_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    fail_times: int
    permanent: bool
    def __init__(self, fail_times: _Optional[int] = ..., permanent: _Optional[bool] = ...) -> None: ...

class FlakyResult(_message.Message):
    __slots__ = ("attempts",)
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    def __init__(self, attempts: _Optional[int] = ...) -> None: ...

class ExportReportJob(_message.Message):
    __slots__ = ("range", "rows")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    range: str
    rows: int
    def __init__(self, range: _Optional[str] = ..., rows: _Optional[int] = ...) -> None: ...

class ExportReportResult(_message.Message):
    __slots__ = ("uri", "row_count", "size_bytes")
    URI_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    uri: str
    row_count: int
    size_bytes: int
    def __init__(self, uri: _Optional[str] = ..., row_count: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...
