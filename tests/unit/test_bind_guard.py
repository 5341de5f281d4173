import pytest

from mlflow_secure.bind_guard import check_bind, is_loopback
from mlflow_secure.config import ConfigError


@pytest.mark.parametrize(
    "argv",
    [
        ["uvicorn", "--host", "127.0.0.1", "--port", "5000"],
        ["uvicorn", "--host", "::1"],
        ["uvicorn", "--host", "localhost"],
        ["gunicorn", "-b", "127.0.0.1:5000"],
        ["gunicorn", "-b", "[::1]:5000"],
        ["waitress", "--host=127.0.0.1", "--port=5000"],
        ["gunicorn", "--bind", "unix:/run/mlflow.sock"],
        ["uvicorn", "--host", "0.0.0.0", "--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"],
        ["gunicorn", "-b", "0.0.0.0:443", "--certfile=c.pem"],
        ["uvicorn"],  # uvicorn's own default is loopback
    ],
)
def test_private_or_tls_binds_are_accepted(argv):
    check_bind(argv, allow_insecure=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["uvicorn", "--host", "0.0.0.0"],
        ["uvicorn", "--host", "::"],
        ["uvicorn", "--host", "10.1.2.3"],
        ["uvicorn", "--host", "mlflow.example.com"],
        ["gunicorn", "-b", "0.0.0.0:5000"],
        ["gunicorn", "-b", "127.0.0.1:5000", "-b", "0.0.0.0:5001"],
        ["waitress", "--host=0.0.0.0"],
    ],
)
def test_plaintext_on_a_network_address_is_refused(argv):
    with pytest.raises(ConfigError, match="MLFLOW_SECURE_ALLOW_INSECURE_BIND"):
        check_bind(argv, allow_insecure=False)
    check_bind(argv, allow_insecure=True)


def test_loopback_detection():
    assert is_loopback("127.0.0.5")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("localhost.evil.example")
