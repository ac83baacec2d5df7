"""pytest plugins (tests/conftest.py loads them): fixtures every test folder may request by name."""
