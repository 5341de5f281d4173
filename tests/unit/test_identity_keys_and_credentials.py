import base64
import zlib

import pytest

from mlflow_secure.identity import api_keys, passwords
from mlflow_secure.identity.credentials import (
    Basic,
    Bearer,
    CredentialError,
    check_query_string,
    parse_authorization,
)


def test_generated_keys_have_the_documented_shape():
    key, parsed = api_keys.generate()
    assert len(key) == api_keys.KEY_LENGTH == 66
    assert key.startswith("mlsk_")
    assert api_keys.KEY_PATTERN.fullmatch(key)
    assert api_keys.parse(key) == parsed
    assert parsed.key_id == key[5:17]
    assert key[17:60] not in api_keys.display(parsed.key_id)  # listings never show the secret


def test_keys_are_unique_and_digests_differ():
    keys = {api_keys.generate()[0] for _ in range(200)}
    assert len(keys) == 200
    assert len({api_keys.digest(k) for k in keys}) == 200


@pytest.mark.parametrize(
    "mutate",
    [
        lambda k: k[:-1],  # truncated
        lambda k: k + "x",
        lambda k: "mlsx_" + k[5:],
        lambda k: k[:30] + ("a" if k[30] != "a" else "b") + k[31:],  # typo breaks the checksum
        lambda k: k[:20] + "-" + k[21:],
        lambda k: f'"{k}"'[:66],
    ],
)
def test_malformed_keys_are_refused_without_echo(mutate):
    key, _ = api_keys.generate()
    bad = mutate(key)
    with pytest.raises(api_keys.MalformedKey) as info:
        api_keys.parse(bad)
    assert bad not in str(info.value)


def test_checksum_is_crc32_for_scanners():
    key, _ = api_keys.generate()
    body, checksum = key[:-6], key[-6:]
    value = 0
    for char in checksum:
        value = value * 62 + api_keys.ALPHABET.index(char)
    assert value == zlib.crc32(body.encode())


def test_digest_matching_is_exact():
    key, parsed = api_keys.generate()
    other, _ = api_keys.generate()
    assert api_keys.matches(parsed, api_keys.digest(key))
    assert not api_keys.matches(parsed, api_keys.digest(other))


def test_password_hashing():
    encoded = passwords.hash_password("correct horse battery")
    assert encoded.startswith("$argon2id$")
    assert "correct horse" not in encoded
    assert passwords.verify_password("correct horse battery", encoded)
    assert not passwords.verify_password("correct horse batterY", encoded)
    assert not passwords.verify_password("", encoded)
    assert not passwords.verify_password("x" * 2000, encoded)
    assert not passwords.verify_password("anything at all", None)
    assert not passwords.verify_password("anything at all", "not-a-phc-string")
    assert passwords.hash_password("correct horse battery") != encoded  # salted


@pytest.mark.parametrize("weak", ["short", "x" * 11, "y" * 1025])
def test_password_policy(weak):
    with pytest.raises(passwords.WeakPassword):
        passwords.hash_password(weak)


def basic(text: bytes) -> bytes:
    return b"Basic " + base64.b64encode(text)


def test_bearer_and_basic_are_parsed():
    assert parse_authorization([b"Bearer abc"]) == Bearer("abc")
    assert parse_authorization([b"bearer   abc  "]) == Bearer("abc")
    assert parse_authorization([basic(b"alice:pa:ss")]) == Basic("alice", "pa:ss")
    assert parse_authorization([basic("zoë:pässword".encode())]) == Basic("zoë", "pässword")
    assert parse_authorization([]) is None


FIXED_MESSAGES = {
    "Send exactly one Authorization header.",
    "The Authorization header is too large.",
    "Malformed Authorization header.",
    "Unsupported authorization scheme; use Bearer or Basic.",
    "Malformed Basic credentials.",
}


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([b"Bearer a", b"Bearer b"], 400),
        ([b"Bearer " + b"a" * 9000], 400),
        ([b"Bearer"], 401),
        ([b"Bearer   "], 401),
        ([b""], 401),
        ([b"Token abc"], 401),
        ([b"Digest username=x"], 401),
        ([b"Basic !!!notbase64"], 401),
        ([basic(b"no-colon")], 401),
        ([basic(b":password")], 401),
        ([basic(b"alice:")], 401),
        ([basic(b"\xff\xfe:\xff")], 401),
        ([b"Bearer \xe9t\xe9"], 401),
    ],
)
def test_malformed_authorization_is_refused_without_echo(values, status):
    with pytest.raises(CredentialError) as info:
        parse_authorization(values)
    assert info.value.status == status
    assert str(info.value) in FIXED_MESSAGES  # nothing from the request is echoed


@pytest.mark.parametrize(
    "query",
    [
        b"api_key=abc",
        b"x=1&token=abc",
        b"access_token=eyJhbGciOi",
        b"q=mlsk_" + b"a" * 61,
        b"password=hunter2",
        b"t=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    ],
)
def test_credentials_in_the_url_are_refused(query):
    with pytest.raises(CredentialError) as info:
        check_query_string(query)
    assert info.value.status == 400
    assert b"abc" not in str(info.value).encode()


def test_ordinary_query_strings_pass():
    check_query_string(b"experiment_ids=1&max_results=10&filter=tags.x%20%3D%20%27y%27")
    check_query_string(b"")
