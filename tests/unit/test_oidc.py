"""OIDC bearer-token verification against a real local identity provider (no mocks)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from mlflow_secure.identity.oidc import (
    MAX_TOKEN_BYTES,
    OidcError,
    OidcIdentity,
    OidcSettings,
    OidcVerifier,
    looks_like_jwt,
)
from tests.support.oidc_provider import OMIT, LocalOidcProvider, new_private_key

MakeVerifier = Callable[..., OidcVerifier]


@pytest.fixture
def idp() -> Iterator[LocalOidcProvider]:
    with LocalOidcProvider() as provider:
        yield provider


@pytest.fixture
def make_verifier(idp: LocalOidcProvider) -> MakeVerifier:
    def make(refetch_interval: float = 30.0, **overrides: object) -> OidcVerifier:
        fields: dict[str, object] = {"issuer": idp.issuer, "audience": "mlflow", **overrides}
        settings = OidcSettings(**fields)  # type: ignore[arg-type]
        return OidcVerifier(settings, http_timeout=2.0, refetch_interval=refetch_interval)

    return make


@pytest.fixture
def verifier(make_verifier: MakeVerifier) -> OidcVerifier:
    return make_verifier()


def raw_token(header: object, payload: object = None, signature: bytes = b"sig") -> str:
    """Hand-assembled compact JWS, for shapes no honest signer would produce."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def seg(obj: object) -> str:
        return b64(obj if isinstance(obj, bytes) else json.dumps(obj).encode())

    return f"{seg(header)}.{seg(payload or {'sub': 'x'})}.{b64(signature)}"


def rejection(verifier: OidcVerifier, token: str) -> str:
    """The reason `token` is refused, checking on the way that it never echoes the token."""
    with pytest.raises(OidcError) as caught:
        verifier.verify(token)
    message = str(caught.value)
    assert not token or token not in message
    for segment in token.split("."):
        if len(segment) >= 8:
            assert segment not in message
    assert caught.value.__cause__ is None  # no PyJWT/httpx detail chained onto the error
    return message


# -- the happy path -------------------------------------------------------------------------


def test_valid_token_gives_username_groups_and_expiry(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    token = idp.mint({"groups": ["team-a", "team-b", "team-a"]}, expires_in=600)

    identity = verifier.verify(token)

    assert identity.username == "alice"
    assert identity.groups == ("team-a", "team-b")
    assert identity.expires_at == pytest.approx(time.time() + 600, abs=5)
    assert identity.claims["sub"] == "alice-subject-id"
    assert identity.claims["iss"] == idp.issuer


def test_username_falls_back_to_sub(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    identity = verifier.verify(idp.mint({"preferred_username": OMIT}))

    assert identity.username == "alice-subject-id"
    assert identity.groups == ()


def test_custom_username_and_groups_claims(
    idp: LocalOidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(username_claim="email", groups_claim="roles")
    token = idp.mint({"email": "alice@example.com", "roles": ["admins"], "groups": ["ignored"]})

    identity = verifier.verify(token)

    assert identity.username == "alice@example.com"
    assert identity.groups == ("admins",)


def test_groups_as_a_single_string(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    assert verifier.verify(idp.mint({"groups": "team-a"})).groups == ("team-a",)


@pytest.mark.parametrize(
    "groups", [[1, 2], ["team-a", None], {"team": "a"}, ["bad\nname"], [""], 7]
)
def test_malformed_groups_are_refused_not_silently_dropped(
    idp: LocalOidcProvider, verifier: OidcVerifier, groups: object
) -> None:
    assert rejection(verifier, idp.mint({"groups": groups})) == "token has an invalid groups claim"


@pytest.mark.parametrize("username", ["", "evil\r\nadmin", ["alice"], 42, "x" * 300])
def test_unusable_usernames_are_refused(
    idp: LocalOidcProvider, verifier: OidcVerifier, username: object
) -> None:
    token = idp.mint({"preferred_username": username})
    assert rejection(verifier, token) == "token has no valid username"


def test_no_username_and_no_sub_is_refused(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    token = idp.mint({"preferred_username": OMIT, "sub": OMIT})
    assert rejection(verifier, token) == "token has no valid username"


def test_audience_list_containing_ours_is_accepted(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    identity = verifier.verify(idp.mint({"aud": ["account", "mlflow"]}))
    assert identity.username == "alice"


def test_identity_repr_leaves_out_claims(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    identity = verifier.verify(idp.mint({"email": "alice@example.com"}))
    assert "alice@example.com" not in repr(identity)
    assert isinstance(identity, OidcIdentity)


# -- claim checks ---------------------------------------------------------------------------


def test_expired_token(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    assert rejection(verifier, idp.mint(expires_in=-120)) == "token expired"


def test_expiry_within_leeway_is_tolerated(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    assert verifier.verify(idp.mint(expires_in=-10)).username == "alice"


def test_nbf_in_the_future_is_not_yet_valid(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    token = idp.mint({"nbf": int(time.time()) + 600})
    assert rejection(verifier, token) == "token not yet valid"


def test_iat_in_the_future_beyond_leeway_is_not_yet_valid(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    token = idp.mint({"iat": int(time.time()) + 600})
    assert rejection(verifier, token) == "token not yet valid"


def test_small_clock_skew_is_tolerated(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    now = int(time.time())
    assert verifier.verify(idp.mint({"iat": now + 10, "nbf": now + 10})).username == "alice"


def test_wrong_issuer(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    token = idp.mint({"iss": "http://127.0.0.1:1/realms/other"})
    assert rejection(verifier, token) == "wrong issuer"


def test_issuer_must_match_exactly(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    assert rejection(verifier, idp.mint({"iss": idp.issuer + "/"})) == "wrong issuer"


def test_wrong_audience(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    assert rejection(verifier, idp.mint(audience="some-other-app")) == "wrong audience"
    assert rejection(verifier, idp.mint({"aud": ["account", "grafana"]})) == "wrong audience"


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud"])
def test_required_claims(idp: LocalOidcProvider, verifier: OidcVerifier, claim: str) -> None:
    token = idp.mint({claim: OMIT})
    assert rejection(verifier, token) == f"token lacks required claim '{claim}'"


@pytest.mark.parametrize(("claim", "offset"), [("exp", 300), ("iat", -10)])
def test_time_claims_must_be_numbers(
    idp: LocalOidcProvider, verifier: OidcVerifier, claim: str, offset: int
) -> None:
    # PyJWT alone would coerce these with int() and accept them.
    token = idp.mint({claim: str(int(time.time()) + offset)})
    assert rejection(verifier, token) == "malformed token"
    assert rejection(verifier, idp.mint({claim: True})) in {"malformed token", "token expired"}


# -- algorithm and key attacks --------------------------------------------------------------


def test_alg_none_is_refused(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    assert rejection(verifier, idp.mint_unsigned()) == "unsupported algorithm 'none'"


def test_hs256_signed_with_the_public_key_is_refused(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    # The algorithm-confusion forgery: HMAC "signed" with the published RSA public key.
    forged = idp.mint(alg="HS256", key=idp.public_key_pem, kid=idp.signing_kid)
    assert rejection(verifier, forged) == "unsupported algorithm 'HS256'"
    assert idp.jwks_requests == 0  # refused on the header alone, before touching keys


def test_algorithm_outside_the_allow_list_is_refused(
    idp: LocalOidcProvider, make_verifier: MakeVerifier
) -> None:
    kid = idp.add_key("ES256")
    verifier = make_verifier(algorithms=("RS256",))
    assert rejection(verifier, idp.mint(alg="ES256", kid=kid)) == "unsupported algorithm 'ES256'"


@pytest.mark.parametrize("alg", ["HS256", "none", "hs512", "NONE", "RS1"])
def test_settings_refuse_symmetric_none_and_unknown_algorithms(alg: str) -> None:
    with pytest.raises(ValueError, match="OIDC algorithm"):
        OidcSettings(issuer="http://idp", audience="mlflow", algorithms=("RS256", alg))


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256"])
def test_other_asymmetric_algorithms(
    idp: LocalOidcProvider, verifier: OidcVerifier, alg: str
) -> None:
    kid = idp.add_key(alg)
    assert verifier.verify(idp.mint(alg=alg, kid=kid)).username == "alice"


def test_rsa_key_without_declared_alg_serves_rs256_and_ps256(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    kid = idp.add_key("RS256", publish_alg=False)
    assert verifier.verify(idp.mint(alg="RS256", kid=kid)).username == "alice"
    assert verifier.verify(idp.mint(alg="PS256", kid=kid)).username == "alice"


def test_key_declaring_one_alg_is_not_used_with_another(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    kid = idp.add_key("PS256")
    message = rejection(verifier, idp.mint(alg="RS256", kid=kid))
    assert message == "signing key does not match the token's algorithm"


def test_unknown_key_and_kid_is_refused(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    outsider = new_private_key("RS256")
    token = idp.mint({"preferred_username": "admin"}, key=outsider, kid="not-in-the-jwks")
    assert rejection(verifier, token) == "unknown signing key"


def test_foreign_key_claiming_a_published_kid_is_a_bad_signature(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    outsider = new_private_key("RS256")
    token = idp.mint({"preferred_username": "admin"}, key=outsider, kid=idp.signing_kid)
    assert rejection(verifier, token) == "bad signature"


def test_tampered_payload_is_a_bad_signature(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    header, _, signature = idp.mint().split(".")
    _, payload, _ = idp.mint({"preferred_username": "admin"}).split(".")
    assert rejection(verifier, f"{header}.{payload}.{signature}") == "bad signature"


def test_token_without_kid_uses_the_only_fitting_key(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    token = idp.mint(headers={"kid": OMIT})
    assert verifier.verify(token).username == "alice"


def test_token_without_kid_is_refused_when_several_keys_fit(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    idp.add_key("RS256")
    assert rejection(verifier, idp.mint(headers={"kid": OMIT})) == "unknown signing key"


def test_token_supplied_key_urls_are_ignored(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    outsider = new_private_key("RS256")
    with LocalOidcProvider() as attacker_idp:
        token = idp.mint(
            key=outsider,
            kid="attacker-kid",
            headers={"jku": attacker_idp.jwks_url, "x5u": attacker_idp.jwks_url},
        )
        assert rejection(verifier, token) == "unknown signing key"
        assert attacker_idp.jwks_requests == 0


# -- malformed input and what errors reveal -------------------------------------------------


def test_oversized_token_is_refused_before_parsing(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    token = idp.mint({"padding": "x" * MAX_TOKEN_BYTES})
    assert len(token) > MAX_TOKEN_BYTES
    assert rejection(verifier, token) == "token too large"
    assert idp.jwks_requests == 0


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        raw_token({"alg": "RS256"}) + "!!",  # not base64url
        raw_token(b"not json"),
        raw_token([1, 2]),  # JSON, but not an object
        raw_token({"typ": "JWT"}),  # no alg at all
        raw_token({"alg": 256}),
        raw_token({"alg": "RS256", "kid": 1}),  # kid must be a string
    ],
)
def test_malformed_tokens(verifier: OidcVerifier, token: str) -> None:
    assert rejection(verifier, token) == "malformed token"


def test_unprintable_alg_is_not_echoed(verifier: OidcVerifier) -> None:
    token = raw_token({"alg": "<script>alert(1)</script>"})
    assert rejection(verifier, token) == "unsupported algorithm '?'"


def test_error_messages_never_contain_the_token(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    outsider = new_private_key("RS256")
    bad_tokens = [
        idp.mint(expires_in=-600),
        idp.mint(audience="other"),
        idp.mint({"iss": "http://elsewhere"}),
        idp.mint(key=outsider, kid=idp.signing_kid),
        idp.mint(key=outsider, kid="zzz"),
        idp.mint_unsigned(),
        idp.mint(alg="HS256", key=idp.public_key_pem, kid=idp.signing_kid),
        idp.mint({"groups": [1]}),
        idp.mint({"padding": "y" * MAX_TOKEN_BYTES}),
    ]
    for token in bad_tokens:
        rejection(verifier, token)  # asserts the message holds no token segment


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (raw_token({"alg": "RS256"}), True),
        (raw_token({"alg": "none"}, signature=b""), True),  # unsigned: routed here, refused
        ("mlsk_0123456789abcdefghijklmnopqrstuvwxyz", False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a b.c.d", False),
        ("eyJh.eyJz.c2ln\n", False),
        ("", False),
    ],
)
def test_looks_like_jwt(candidate: str, expected: bool) -> None:
    assert looks_like_jwt(candidate) is expected


# -- fetching keys --------------------------------------------------------------------------


def test_keys_come_from_discovery_once_then_are_cached(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    for _ in range(5):
        verifier.verify(idp.mint())

    assert idp.discovery_requests == 1
    assert idp.jwks_requests == 1


def test_explicit_jwks_url_skips_discovery(
    idp: LocalOidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwks_url=idp.jwks_url)
    verifier.verify(idp.mint())
    assert idp.discovery_requests == 0
    assert idp.jwks_requests == 1


def test_discovery_naming_another_issuer_is_refused(
    idp: LocalOidcProvider, make_verifier: MakeVerifier
) -> None:
    # Same discovery URL (the trailing slash is stripped to build it), different issuer.
    verifier = make_verifier(issuer=idp.issuer + "/")
    token = idp.mint({"iss": idp.issuer + "/"})
    assert rejection(verifier, token) == "identity provider unreachable"
    assert idp.jwks_requests == 0


def test_key_rotation_is_picked_up(idp: LocalOidcProvider, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(refetch_interval=0.2)
    old_token = idp.mint()
    assert verifier.verify(old_token).username == "alice"

    idp.rotate_key()
    time.sleep(0.3)
    new_token = idp.mint({"preferred_username": "bob"})

    assert verifier.verify(new_token).username == "bob"
    assert idp.jwks_requests == 2
    # The refetched JWKS no longer has the old kid, so the old key is no longer trusted.
    assert rejection(verifier, old_token) == "unknown signing key"


def test_unknown_kids_refetch_at_most_once_per_interval(
    idp: LocalOidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(refetch_interval=0.3)
    verifier.verify(idp.mint())
    assert idp.jwks_requests == 1
    outsider = new_private_key("RS256")
    time.sleep(0.4)

    for n in range(20):
        token = idp.mint(key=outsider, kid=f"random-kid-{n}")
        assert rejection(verifier, token) == "unknown signing key"

    assert idp.jwks_requests == 2  # the first unknown kid refetched; the rest were throttled
    assert verifier.verify(idp.mint()).username == "alice"  # known kid: unaffected

    time.sleep(0.4)
    rejection(verifier, idp.mint(key=outsider, kid="after-the-interval"))
    assert idp.jwks_requests == 3


def test_the_initial_load_counts_towards_the_rate_limit(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    verifier.verify(idp.mint())
    outsider = new_private_key("RS256")
    for n in range(5):
        rejection(verifier, idp.mint(key=outsider, kid=f"kid-{n}"))
    assert idp.jwks_requests == 1


def test_concurrent_unknown_kids_share_one_fetch(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    outsider = new_private_key("RS256")
    tokens = [idp.mint(key=outsider, kid=f"kid-{n}") for n in range(32)]
    errors: list[str] = []
    start = threading.Barrier(len(tokens))

    def attack(token: str) -> None:
        start.wait()
        try:
            verifier.verify(token)
        except OidcError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=attack, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == ["unknown signing key"] * len(tokens)
    assert idp.jwks_requests == 1


def test_provider_down_is_unreachable() -> None:
    with LocalOidcProvider() as gone:
        settings = OidcSettings(issuer=gone.issuer, audience="mlflow")
        token = gone.mint()
    verifier = OidcVerifier(settings, http_timeout=2.0)

    assert rejection(verifier, token) == "identity provider unreachable"
    with pytest.raises(OidcError, match="identity provider unreachable"):
        verifier.refresh_keys()


def test_provider_error_is_unreachable(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    idp.fail_jwks = True
    assert rejection(verifier, idp.mint()) == "identity provider unreachable"


def test_failed_fetches_are_rate_limited_too(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    idp.fail_jwks = True
    for _ in range(10):
        assert rejection(verifier, idp.mint()) == "identity provider unreachable"
    assert idp.jwks_requests == 1


def test_known_keys_keep_working_while_the_provider_is_down(
    make_verifier: MakeVerifier,
) -> None:
    with LocalOidcProvider() as provider:
        verifier = make_verifier(issuer=provider.issuer, refetch_interval=0.0)
        verifier.verify(provider.mint())
        fresh = provider.mint({"preferred_username": "carol"})
        stranger = provider.mint(key=new_private_key("RS256"), kid="new-kid")

    # Hot path: a known kid needs no I/O, so an outage does not lock everyone out...
    assert verifier.verify(fresh).username == "carol"
    # ...but a kid we cannot check is an outage (retry later), not a definitive forgery.
    assert rejection(verifier, stranger) == "identity provider unreachable"


def test_refresh_keys_loads_eagerly(idp: LocalOidcProvider, verifier: OidcVerifier) -> None:
    verifier.refresh_keys()
    assert idp.jwks_requests == 1
    verifier.verify(idp.mint())
    assert idp.jwks_requests == 1


# -- the provider's token endpoint (used by client-side tests) -----------------------------


def test_client_credentials_grant_issues_verifiable_tokens(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    idp.register_client("ci-bot", "s3cret+/=", {"groups": ["pipelines"]})
    idp.token_lifetime = 120

    basic = httpx.post(
        idp.token_url, data={"grant_type": "client_credentials"}, auth=("ci-bot", "s3cret+/=")
    )
    posted = httpx.post(
        idp.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": "ci-bot",
            "client_secret": "s3cret+/=",
            "scope": "mlflow",
        },
    )

    for response in (basic, posted):
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 120
        identity = verifier.verify(body["access_token"])
        assert identity.username == "ci-bot"
        assert identity.groups == ("pipelines",)
        assert identity.claims["azp"] == "ci-bot"
    assert idp.token_requests == 2


def test_client_credentials_grant_refuses_a_wrong_secret(idp: LocalOidcProvider) -> None:
    idp.register_client("ci-bot", "right")

    response = httpx.post(
        idp.token_url, data={"grant_type": "client_credentials"}, auth=("ci-bot", "wrong")
    )

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}
    assert idp.token_requests == 1


def test_client_credentials_audience_parameter(
    idp: LocalOidcProvider, verifier: OidcVerifier
) -> None:
    idp.register_client("ci-bot", "pw")
    response = httpx.post(
        idp.token_url,
        data={"grant_type": "client_credentials", "audience": "elsewhere"},
        auth=("ci-bot", "pw"),
    )
    assert rejection(verifier, response.json()["access_token"]) == "wrong audience"
