import math
import re
import warnings

import numpy as np
import pytest

from trackstream.producer import validation
from trackstream.producer.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_EXPERIMENT_TAG_VAL_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
    REDACTED,
    SecretKeyWarning,
    SecretPolicy,
    apply_secret_policy,
    looks_like_secret,
    validate_batch_sizes,
    validate_experiment_name,
    validate_experiment_tag_value,
    validate_key,
    validate_metric,
    validate_metric_arrays,
    validate_param_value,
    validate_run_id,
    validate_tag_value,
)
from trackstream.errors import InvalidInput

TS = 1_700_000_000_000


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "loss", "é", "ok key:1", "train/loss", "a.b-c_d", "x" * MAX_ENTITY_KEY_LENGTH, "日本語", "a..b",
        "v1.2/acc",
    ],
)
def test_valid_keys_are_accepted_and_returned(key):
    assert validate_key(key, "param") == key


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("bad$char", "'$' at position 3"),
        ("back\\slash", "'\\\\' at position 4"),
        ("emoji\U0001F600", "only contain alphanumerics"),
        ("trail\n", "'\\n' at position 5"),
        ("tab\tkey", "only contain alphanumerics"),
    ],
)
def test_keys_with_forbidden_characters_are_rejected_naming_key_and_character(key, fragment):
    with pytest.raises(InvalidInput) as info:
        validate_key(key, "param")
    message = str(info.value)
    assert message.startswith(f"Invalid param key {key!r}: names may only contain alphanumerics")
    assert fragment in message


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("../x", "must not start with '..'"),
        ("a/../b", "would resolve to 'b'"),
        ("/abs", "must not start with '/'"),
        (".", "'.' is not a name"),
        ("a//b", "would resolve to 'a/b'"),
        ("a/", "would resolve to 'a'"),
        ("./a", "would resolve to 'a'"),
        ("..hidden", "must not start with '..'"),
    ],
)
def test_keys_that_resolve_to_another_path_are_rejected(key, fragment):
    with pytest.raises(InvalidInput) as info:
        validate_key(key, "metric")
    message = str(info.value)
    assert message.startswith(f"Invalid metric key {key!r}:")
    assert "must not resolve to another name" in message
    assert fragment in message


def test_key_of_251_characters_is_rejected_with_its_length():
    key = "k" * (MAX_ENTITY_KEY_LENGTH + 1)
    with pytest.raises(InvalidInput) as info:
        validate_key(key, "tag")
    message = str(info.value)
    assert message.startswith("Invalid tag key 'kkkk")
    assert "251 characters exceeds the maximum length of 250" in message
    assert len(message) < 300, "a huge key must not be copied whole into the message"


@pytest.mark.parametrize("key", [None, ""])
def test_missing_key_is_rejected_as_missing(key):
    with pytest.raises(InvalidInput, match=r"^Missing experiment tag key"):
        validate_key(key, "experiment tag")


@pytest.mark.parametrize("key", [1, 1.5, b"loss", ["a"]])
def test_non_string_key_is_rejected_naming_its_type(key):
    with pytest.raises(InvalidInput) as info:
        validate_key(key, "param")
    assert f"must be a string, got {type(key).__name__}" in str(info.value)


@pytest.mark.parametrize(
    "key",
    [
        "abc", "é", "a b", "a:b", "a\nb", "x\n", "\u00a0", "١٢", "a\u200bb", "Ω", "a\tb", "~", "a,b",
        "\U0001F600",
    ],
)
def test_character_rule_agrees_with_mlflow_fullmatch(key):
    mlflow_ok = re.fullmatch(r"[/\w.\- :]*", key) is not None
    try:
        validate_key(key, "param")
        ok = True
    except InvalidInput:
        ok = False
    assert ok == mlflow_ok


def test_remembered_valid_keys_stay_bounded():
    for i in range(validation._KEY_CACHE_SIZE + 10):
        validate_key(f"bound/{i}", "metric")
    assert len(validation._valid_keys) <= validation._KEY_CACHE_SIZE


def test_str_subclass_key_is_returned_as_plain_str():
    result = validate_key(np.str_("acc"), "metric")
    assert result == "acc" and type(result) is str


def test_invalid_key_is_rejected_every_time_not_only_before_caching():
    for _ in range(3):
        with pytest.raises(InvalidInput):
            validate_key("a$", "param")


def test_kind_is_named_in_message_even_when_result_is_cached():
    with pytest.raises(InvalidInput, match="Invalid param key 'x/'"):
        validate_key("x/", "param")
    with pytest.raises(InvalidInput, match="Invalid tag key 'x/'"):
        validate_key("x/", "tag")


# --- params, tags, experiments --------------------------------------------------------------


def test_param_value_is_stringified_like_mlflow():
    assert validate_param_value("lr", 0.1) == "0.1"
    assert validate_param_value("layers", [1, 2]) == "[1, 2]"
    assert validate_param_value("flag", True) == "True"


def test_param_value_at_limit_is_accepted_and_one_over_is_rejected_not_truncated():
    assert validate_param_value("p", "v" * MAX_PARAM_VAL_LENGTH) == "v" * MAX_PARAM_VAL_LENGTH
    with pytest.raises(InvalidInput) as info:
        validate_param_value("p", "v" * (MAX_PARAM_VAL_LENGTH + 1))
    message = str(info.value)
    assert "param 'p'" in message and "6001 characters exceeds the maximum length of 6000" in message
    assert "vvvvvvvv" not in message


def test_param_value_none_is_rejected():
    with pytest.raises(InvalidInput, match="param 'lr'.*None"):
        validate_param_value("lr", None)


def test_tag_value_limit_is_8000():
    assert len(validate_tag_value("t", "v" * MAX_TAG_VAL_LENGTH)) == MAX_TAG_VAL_LENGTH
    with pytest.raises(InvalidInput, match="tag 't'.*8001 characters"):
        validate_tag_value("t", "v" * (MAX_TAG_VAL_LENGTH + 1))


def test_tag_value_none_is_rejected():
    with pytest.raises(InvalidInput, match="tag 'note'"):
        validate_tag_value("note", None)


def test_experiment_tag_value_limit_is_20000():
    assert len(validate_experiment_tag_value("t", "v" * MAX_EXPERIMENT_TAG_VAL_LENGTH)) == 20000
    with pytest.raises(InvalidInput, match="experiment tag 't'.*20001 characters"):
        validate_experiment_tag_value("t", "v" * (MAX_EXPERIMENT_TAG_VAL_LENGTH + 1))


def test_experiment_name_is_returned_unchanged():
    assert validate_experiment_name(" my exp ") == " my exp "
    assert validate_experiment_name("n" * MAX_EXPERIMENT_NAME_LENGTH) == "n" * 500


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_blank_experiment_name_is_rejected(name):
    with pytest.raises(InvalidInput, match="must not be empty"):
        validate_experiment_name(name)


def test_experiment_name_over_500_characters_is_rejected():
    with pytest.raises(InvalidInput, match="501 characters exceeds the maximum length of 500"):
        validate_experiment_name("n" * 501)


@pytest.mark.parametrize("name", [None, 3])
def test_non_string_experiment_name_is_rejected(name):
    with pytest.raises(InvalidInput, match="must be a string"):
        validate_experiment_name(name)


# --- metrics ----------------------------------------------------------------------------------


def test_plain_metric_is_returned_as_float_int_int():
    assert validate_metric("loss", 0.5, 3, TS) == (0.5, 3, TS)


def test_int_metric_value_becomes_float():
    value, _, _ = validate_metric("count", 7, 0, TS)
    assert value == 7.0 and type(value) is float


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_pass_through_unchanged(value):
    result, _, _ = validate_metric("m", value, 0, TS)
    assert result is value


@pytest.mark.parametrize("value", [np.float64(math.nan), np.float32(math.inf), np.float16(-math.inf)])
def test_numpy_nan_and_inf_are_accepted(value):
    result, _, _ = validate_metric("m", value, 0, TS)
    assert type(result) is float
    assert (math.isnan(result) and math.isnan(value)) or result == value


@pytest.mark.parametrize(
    ("value", "step", "ts"),
    [
        (np.float64(0.25), np.int64(2), np.int64(TS)),
        (np.float32(0.25), np.int32(2), np.uint64(TS)),
        (np.int64(1), np.uint8(2), TS),
    ],
)
def test_numpy_scalars_are_accepted_and_converted_to_python_types(value, step, ts):
    result = validate_metric("m", value, step, ts)
    assert [type(x) for x in result] == [float, int, int]
    assert result == (float(value), int(step), int(ts))


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bool_metric_value_is_rejected(value):
    with pytest.raises(InvalidInput) as info:
        validate_metric("acc", value, 0, TS)
    assert "metric 'acc'" in str(info.value) and "bool" in str(info.value)


@pytest.mark.parametrize("value", ["0.5", None, 1 + 2j, [1.0]])
def test_non_numeric_metric_value_is_rejected_naming_key_and_type(value):
    with pytest.raises(InvalidInput) as info:
        validate_metric("acc", value, 0, TS)
    message = str(info.value)
    assert "metric 'acc'" in message and type(value).__name__ in message


def test_zero_dimensional_array_value_is_rejected_with_item_hint():
    with pytest.raises(InvalidInput, match=r"\.item\(\)"):
        validate_metric("acc", np.array(0.5), 0, TS)


def test_int_value_too_large_for_float64_is_rejected():
    with pytest.raises(InvalidInput, match="too large for a 64-bit float"):
        validate_metric("m", 10**400, 0, TS)


def test_negative_step_is_accepted():
    assert validate_metric("m", 1.0, -5, TS)[1] == -5


@pytest.mark.parametrize("step", [1.5, 2.0, np.float64(1.5)])
def test_float_step_is_rejected_instead_of_silently_stored_as_zero(step):
    with pytest.raises(InvalidInput) as info:
        validate_metric("loss", 1.0, step, TS)
    message = str(info.value)
    assert f"Invalid step {step!r} for metric 'loss'" in message
    assert "must be an integer" in message


@pytest.mark.parametrize("step", [True, None, "3"])
def test_bool_none_and_string_steps_are_rejected(step):
    with pytest.raises(InvalidInput, match="Invalid step .* for metric 'loss'"):
        validate_metric("loss", 1.0, step, TS)


@pytest.mark.parametrize("step", [2**63, -(2**63) - 1, np.uint64(2**63)])
def test_step_outside_int64_is_rejected(step):
    with pytest.raises(InvalidInput, match="must be a 64-bit integer"):
        validate_metric("loss", 1.0, step, TS)


def test_int64_extremes_are_accepted_as_step():
    assert validate_metric("m", 1.0, 2**63 - 1, TS)[1] == 2**63 - 1
    assert validate_metric("m", 1.0, -(2**63), TS)[1] == -(2**63)


def test_negative_timestamp_is_rejected():
    with pytest.raises(InvalidInput) as info:
        validate_metric("m6", 1.0, 0, -5)
    assert "Invalid timestamp -5 for metric 'm6': must be a non-negative 64-bit integer" in str(info.value)


@pytest.mark.parametrize("ts", [1.7e12, np.float64(1.7e12), None, True, 2**63])
def test_float_none_bool_and_oversized_timestamps_are_rejected(ts):
    with pytest.raises(InvalidInput, match="Invalid timestamp .* for metric 'm'"):
        validate_metric("m", 1.0, 0, ts)


def test_zero_timestamp_is_accepted():
    assert validate_metric("m", 1.0, 0, 0)[2] == 0


@pytest.mark.parametrize("key", ["bad$", "", None, "a/../b"])
def test_metric_with_invalid_key_is_rejected_naming_the_key(key):
    with pytest.raises(InvalidInput, match="metric key"):
        validate_metric(key, 1.0, 0, TS)


# --- metric arrays ----------------------------------------------------------------------------


def test_metric_arrays_are_returned_as_float64_and_int64():
    keys, values, steps, ts = validate_metric_arrays(
        "loss", np.array([1, 2], np.int32), np.array([0, 1], np.uint16), np.array([TS, TS], np.int64)
    )
    assert keys == "loss"
    assert values.dtype == np.float64 and steps.dtype == np.int64 and ts.dtype == np.int64
    assert values.tolist() == [1.0, 2.0] and steps.tolist() == [0, 1]


def test_metric_arrays_already_in_target_dtypes_are_not_copied():
    values, steps, ts = np.array([0.5]), np.array([1], np.int64), np.array([TS], np.int64)
    _, v, s, t = validate_metric_arrays("m", values, steps, ts)
    assert v is values and s is steps and t is ts


def test_metric_arrays_keep_nan_and_inf_and_negative_steps():
    _, values, steps, _ = validate_metric_arrays(
        "m", np.array([np.nan, np.inf, -np.inf]), np.array([-1, 0, 1]), np.array([0, 1, 2])
    )
    assert np.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf
    assert steps.tolist() == [-1, 0, 1]


def test_metric_arrays_accept_one_key_per_point():
    keys, *_ = validate_metric_arrays(np.array(["a", "b", "a"]), [1.0, 2.0, 3.0], [0, 0, 1], [1, 1, 1])
    assert keys.tolist() == ["a", "b", "a"]


def test_metric_arrays_name_the_first_bad_key_index():
    with pytest.raises(InvalidInput) as info:
        validate_metric_arrays(["ok", "ok", "bad$", "x/"], [1.0] * 4, [0] * 4, [0] * 4)
    assert str(info.value).startswith("Invalid metric keys at index 2: Invalid metric key 'bad$'")


def test_metric_arrays_reject_negative_timestamp_naming_index_and_value():
    with pytest.raises(InvalidInput) as info:
        validate_metric_arrays("m", np.zeros(4), np.arange(4), np.array([TS, TS, -7, -1]))
    assert "Invalid metric timestamps at index 2: -7" in str(info.value)


def test_metric_arrays_reject_bool_values():
    with pytest.raises(InvalidInput) as info:
        validate_metric_arrays("m", np.array([True, False]), [0, 1], [0, 0])
    assert "got dtype bool" in str(info.value) and "index 0: True" in str(info.value)


def test_metric_arrays_reject_object_values_naming_first_non_number():
    with pytest.raises(InvalidInput, match=r"first bad value at index 1: None"):
        validate_metric_arrays("m", np.array([1.0, None, "x"], dtype=object), [0, 1, 2], [0, 0, 0])


def test_metric_arrays_accept_object_array_of_numbers():
    _, values, _, _ = validate_metric_arrays("m", np.array([1, 2.5], dtype=object), [0, 1], [0, 0])
    assert values.dtype == np.float64 and values.tolist() == [1.0, 2.5]


def test_metric_arrays_reject_float_steps_naming_first_fractional_value():
    with pytest.raises(InvalidInput) as info:
        validate_metric_arrays("m", [1.0, 2.0, 3.0], np.array([0.0, 1.0, 1.5]), [0, 0, 0])
    assert "Invalid metric steps: expected an integer array, got dtype float64" in str(info.value)
    assert "index 2: 1.5" in str(info.value)


def test_metric_arrays_reject_uint64_steps_beyond_int64():
    with pytest.raises(InvalidInput, match="steps at index 1"):
        validate_metric_arrays("m", [1.0, 2.0], np.array([0, 2**63], np.uint64), [0, 0])


def test_metric_arrays_reject_unequal_lengths_naming_each_length():
    with pytest.raises(InvalidInput, match=r"lengths differ \(values=3, steps=2, timestamps=3\)"):
        validate_metric_arrays("m", np.zeros(3), np.arange(2), np.arange(3))


def test_metric_arrays_reject_keys_array_of_another_length():
    with pytest.raises(InvalidInput, match="keys=1"):
        validate_metric_arrays(["a"], np.zeros(2), np.arange(2), np.arange(2))


def test_metric_arrays_reject_two_dimensional_input():
    with pytest.raises(InvalidInput, match=r"values: expected a 1-D array, got shape \(2, 2\)"):
        validate_metric_arrays("m", np.zeros((2, 2)), np.arange(2), np.arange(2))


def test_metric_arrays_reject_invalid_single_key():
    with pytest.raises(InvalidInput, match="Invalid metric key '../x'"):
        validate_metric_arrays("../x", [1.0], [0], [0])


def test_empty_metric_arrays_are_accepted():
    _, values, steps, ts = validate_metric_arrays("m", [], np.array([], np.int64), np.array([], np.int64))
    assert len(values) == len(steps) == len(ts) == 0


# --- run ids and batch limits -----------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["0123456789abcdef0123456789abcdef", "run-1_a", "a" * 256])
def test_valid_run_ids_are_accepted(run_id):
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["../etc", "", "-abc", "abc\n", "a b", "é1", None, 12])
def test_invalid_run_ids_are_rejected_naming_the_value(run_id):
    with pytest.raises(InvalidInput) as info:
        validate_run_id(run_id)
    assert str(info.value).startswith(f"Invalid value {run_id!r} for parameter 'run_id' supplied")


def test_run_id_of_257_characters_is_rejected():
    with pytest.raises(InvalidInput, match="Invalid value 'aaaa.*' for parameter 'run_id'"):
        validate_run_id("a" * 257)


def test_batch_at_the_limits_is_accepted():
    validate_batch_sizes(1000, 0, 0)
    validate_batch_sizes(800, 100, 100)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ((1001, 0, 0), "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
                       "Please split up metrics across multiple requests and try again."),
        ((0, 101, 0), "A batch logging request can contain at most 100 params. Got 101 params."),
        ((0, 0, 101), "A batch logging request can contain at most 100 tags. Got 101 tags."),
        ((900, 100, 100), "A batch logging request can contain at most 1000 metrics, params, and tags. "
                          "Got 1100 metrics, params, and tags."),
    ],
)
def test_oversized_batches_are_rejected_with_mlflow_messages(sizes, message):
    with pytest.raises(InvalidInput) as info:
        validate_batch_sizes(*sizes)
    assert str(info.value).startswith(message)


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password", "db_password", "PASSWD", "pwd", "HF_TOKEN", "openaiApiKey", "aws.secret_access_key",
        "api_key", "apikey", "api-key", "API_KEY", "access_key", "private_key", "credentials",
        "auth", "auth_header", "OAuthToken", "github-token", "client_secret", "APIKey",
    ],
)
def test_credential_like_keys_are_detected(key):
    assert looks_like_secret(key)


@pytest.mark.parametrize(
    "key",
    [
        "tokenizer", "num_tokens", "author", "passes", "lr", "max_tokens", "keyboard", "api_version",
        "private", "access_count", "monkey", "authors", "passage",
    ],
)
def test_ordinary_keys_are_not_detected_as_credentials(key):
    assert not looks_like_secret(key)


def test_warn_policy_keeps_value_and_warns_naming_key_but_not_value():
    with pytest.warns(SecretKeyWarning) as record:
        result = apply_secret_policy("db_password", "hunter2-s3cret", SecretPolicy.WARN)
    assert result == "hunter2-s3cret"
    message = str(record[0].message)
    assert "'db_password'" in message and "hunter2-s3cret" not in message


def test_warn_is_the_default_policy():
    with pytest.warns(SecretKeyWarning):
        assert apply_secret_policy("HF_TOKEN", "hf_abc") == "hf_abc"


def test_redact_policy_replaces_value_and_warns_without_value():
    with pytest.warns(SecretKeyWarning) as record:
        result = apply_secret_policy("openaiApiKey", "sk-live-123", SecretPolicy.REDACT)
    assert result == REDACTED == "***REDACTED***"
    assert "sk-live-123" not in str(record[0].message)


def test_allow_policy_keeps_value_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_secret_policy("api_key", "k", SecretPolicy.ALLOW) == "k"


def test_policy_is_not_applied_to_ordinary_keys():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_secret_policy("num_tokens", "512", SecretPolicy.REDACT) == "512"


def test_policy_may_be_given_by_name():
    with pytest.warns(SecretKeyWarning):
        assert apply_secret_policy("token", "t", "redact") == REDACTED


def test_warning_points_at_the_caller():
    with pytest.warns(SecretKeyWarning) as record:
        apply_secret_policy("password", "x")
    assert record[0].filename == __file__
