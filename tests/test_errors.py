"""The exception classes of ``fluvial.errors``: one per ErrorCode, each found by its code."""

from __future__ import annotations

import inspect

import pytest

import fluvial.errors as errors
from fluvial.errors import Error, ErrorCode, FluvialError, error_class

CODES = [code for code in ErrorCode if code is not ErrorCode.None_]


@pytest.mark.parametrize("code", CODES, ids=lambda c: c.name)
def test_every_code_has_its_own_class_named_after_it(code):
    cls = error_class(code)
    assert cls is not FluvialError and cls.code is code
    assert cls.__name__ == code.name + ("" if code.name.endswith("Error") else "Error")
    assert getattr(errors, cls.__name__) is cls  # written out in errors.py, importable by name
    assert isinstance(Error(code).exception(), cls)


def test_every_class_maps_back_to_its_code():
    declared = [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
                if issubclass(cls, FluvialError) and "code" in vars(cls) and cls is not FluvialError]
    assert sorted(cls.code for cls in declared) == sorted(CODES)
    for cls in declared:
        assert error_class(cls.code) is cls


def test_success_and_unknown_codes_fall_back_to_the_base_class():
    assert error_class(ErrorCode.None_) is FluvialError
    err = Error(ErrorCode.TopicNotFound).exception("Topic not found: t")
    assert str(err) == "Topic not found: t" and err.error.code is ErrorCode.TopicNotFound
