"""PII redaction: e-mail and IP addresses replaced, look-alikes (versions, handles, times) left alone."""

from hypothesis import given, settings
from hypothesis import strategies as st

from datafactory.factory.config import PiiConfig
from datafactory.filters.pii import _EMAIL, PiiRedactor, replace_emails

REDACT = PiiRedactor(PiiConfig())


def test_emails_replaced():
    result = REDACT.redact("Write to jane.doe+news@mail.example.co.uk or 王伟@例子.中国 today.")
    assert result.text == "Write to email@example.com or email@example.com today."
    assert result.emails == 2


def test_ipv4_and_ipv6_replaced():
    text = "Server 192.168.0.17 and 2001:db8::8a2e:370:7334 and ::1 answered; 10.0.0.255."
    result = REDACT.redact(text)
    assert result.text == "Server 192.0.2.1 and 192.0.2.1 and 192.0.2.1 answered; 192.0.2.1."
    assert result.ips == 4


def test_look_alikes_left_alone():
    text = "Version 1.2.3 at 12:30:45, @handle, user@localhost, 999.1.1.1, 1.2.3.4.5 and std::map."
    result = REDACT.redact(text)
    assert result.text == text
    assert (result.emails, result.ips) == (0, 0)


def test_switch_and_placeholders():
    assert PiiRedactor(PiiConfig(enabled=False)).redact("a@b.com").text == "a@b.com"
    custom = PiiRedactor(PiiConfig(email_placeholder="<EMAIL>", ip_placeholder="<IP>"))
    assert custom.redact("a@b.com from 8.8.8.8").text == "<EMAIL> from <IP>"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab1@.-+_ \n\u3000é中", max_size=80))
def test_emails_found_token_by_token_as_by_the_whole_text_regex(text):
    """The fast path (only tokens holding an "@") replaces exactly what the e-mail regex does over the whole text."""
    assert replace_emails(text, "<EMAIL>") == _EMAIL.subn("<EMAIL>", text)


def test_email_fast_path_on_real_pages(shared_data):
    import gzip
    import json

    with gzip.open(shared_data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        texts = [text for line in lines if "@" in (text := json.loads(line)["text"])]
    assert len(texts) > 100
    assert all(replace_emails(text, "<EMAIL>") == _EMAIL.subn("<EMAIL>", text) for text in texts)
