import pytest

from nlu.language import detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的快递到哪了", "zh"),
        ("iPhone 15 手机壳有货吗", "zh"),
        ("訂單什麼時候到", "zh"),  # traditional characters
        ("where is my order?", "en"),
        ("wher is my ordr plz", "en"),
        ("I WANT MY MONEY BACK!!!", "en"),
        ("¿Dónde está mi pedido?", "other"),
        ("Où est ma commande, merci", "other"),
        ("Wo ist meine Bestellung", "other"),
        ("私の注文はどこですか", "other"),  # Japanese: kana
        ("내 주문은 어디에 있나요", "other"),
        ("Где мой заказ", "other"),
        ("12345", "other"),
        ("", "other"),
        ("👍👍", "other"),
    ],
)
def test_detect_language(text, expected):
    assert detect_language(text) == expected
