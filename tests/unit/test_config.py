from dataclasses import fields
from pathlib import Path

import pytest

from mlflow_secure.config import (
    SETTINGS,
    ConfigError,
    Settings,
    bundled_policy_dir,
    load_settings,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_safe_ones():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.allow_insecure_bind is False
    assert settings.opa_url is None  # managed local OPA, never an implicit remote


def test_settings_table_and_dataclass_agree():
    declared = {s.name: s.default for s in SETTINGS}
    assert declared == {f.name: f.default for f in fields(Settings)}


def test_environment_variables_are_parsed():
    settings = load_settings(
        {
            "MLFLOW_SECURE_OPA_URL": "http://127.0.0.1:8181",
            "MLFLOW_SECURE_OPA_TIMEOUT": "0.25",
            "MLFLOW_SECURE_ALLOW_INSECURE_BIND": "yes",
        }
    )
    assert settings.opa_url == "http://127.0.0.1:8181"
    assert settings.opa_timeout == 0.25
    assert settings.allow_insecure_bind is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLFLOW_SECURE_OPA_TIMEOUT", "soon"),
        ("MLFLOW_SECURE_OPA_TIMEOUT", "-1"),
        ("MLFLOW_SECURE_OPA_TIMEOUT", "inf"),
        ("MLFLOW_SECURE_ALLOW_INSECURE_BIND", "maybe"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_toml_file_is_read_and_environment_wins(tmp_path):
    config = tmp_path / "secure.toml"
    config.write_text('opa_timeout = 2\nallow_insecure_bind = true\npolicy_dir = "/p"\n')
    env = {"MLFLOW_SECURE_CONFIG": str(config), "MLFLOW_SECURE_POLICY_DIR": "/q"}
    settings = load_settings(env)
    assert settings.opa_timeout == 2.0
    assert settings.allow_insecure_bind is True
    assert settings.policy_dir == "/q"


def test_toml_file_with_unknown_key_is_rejected(tmp_path):
    config = tmp_path / "secure.toml"
    config.write_text("opa_tiemout = 2\n")
    with pytest.raises(ConfigError, match="unknown settings \\['opa_tiemout'\\]"):
        load_settings({"MLFLOW_SECURE_CONFIG": str(config)})


def test_missing_or_invalid_toml_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"MLFLOW_SECURE_CONFIG": str(tmp_path / "nope.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("opa_url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"MLFLOW_SECURE_CONFIG": str(bad)})


def test_bundled_policies_are_found_in_a_checkout():
    assert bundled_policy_dir() == REPO / "rego"
    assert (bundled_policy_dir() / "mlflow" / "authz" / "authz.rego").is_file()


def test_every_setting_is_documented():
    text = (REPO / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.env}` | `{setting.name}` |" in text, f"{setting.env} not in the table"
        assert setting.doc in text, f"docs/configuration.md describes {setting.env} differently"
