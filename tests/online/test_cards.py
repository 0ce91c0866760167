"""The storefront's product pictures: every category of the embedded shop is drawn as its family's
silhouette in its colour, anything else falls back to neutral shapes, user text is escaped and the
SVG is well-formed XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from fashionrec.datasets.synthetic import _CATEGORIES, _COLOURS
from fashionrec.online.cards import (
    COLOURS,
    FAMILIES,
    GENERIC,
    LIGHT_OUTLINE,
    SHAPES,
    UNKNOWN_COLOUR,
    colour_hex,
    family,
    outline_hex,
    product_svg,
)
from fashionrec.online.views import ProductCard

SVG = "{http://www.w3.org/2000/svg}"
# The families the embedded shop's categories fall into: tops, bottoms, outerwear, shoes, bag, dress.
FAMILY_OF = {
    "t-shirt": "tee", "shirt": "top", "jumper": "top", "hoodie": "top", "blouse": "top",
    "jacket": "outerwear", "coat": "outerwear", "jeans": "trousers", "trousers": "trousers",
    "shorts": "shorts", "skirt": "skirt", "dress": "dress", "trainers": "trainer", "boots": "boot",
    "sandals": "sandal", "bag": "bag",
}


def card(category: str = "dress", colour: str = "red", title: str = "Red wrap dress",
         product_id: str = "P1") -> ProductCard:
    return ProductCard(product_id, title, category, colour, "Norvel", 39.0)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def silhouette(svg: str) -> ET.Element:
    """The filled family shape: the first path."""
    return parse(svg).findall(f"{SVG}path")[0]


@pytest.mark.parametrize("category", _CATEGORIES)
def test_every_embedded_category_is_drawn_as_its_family_shape(category: str) -> None:
    svg = product_svg(card(category))
    assert family(category) == FAMILY_OF[category] != GENERIC
    assert silhouette(svg).get("d") == SHAPES[FAMILY_OF[category]]
    assert parse(svg).get("data-family") == FAMILY_OF[category]


def test_the_families_cover_the_embedded_shop_and_each_category_looks_different() -> None:
    assert set(FAMILIES) == set(_CATEGORIES)
    assert len(set(FAMILIES.values())) >= 6  # tops, bottoms, outerwear, shoes, bag, dress
    drawings = {category: product_svg(card(category, title="same")) for category in _CATEGORIES}
    assert len(set(drawings.values())) == len(_CATEGORIES)  # details tell a family's members apart


@pytest.mark.parametrize("category", ["Comedy", "Sci-Fi", "homeware", ""])
def test_other_categories_get_the_generic_tag(category: str) -> None:
    svg = product_svg(card(category))
    assert family(category) == GENERIC
    assert silhouette(svg).get("d") == SHAPES[GENERIC]
    assert parse(svg).find(f"{SVG}circle") is not None  # the tag's hole


def test_category_and_colour_names_are_matched_regardless_of_case_and_spaces() -> None:
    assert family(" T-Shirt ") == "tee"
    assert colour_hex("Navy ") == COLOURS["navy"]


@pytest.mark.parametrize("colour", _COLOURS)
def test_every_embedded_colour_has_its_own_fill(colour: str) -> None:
    assert silhouette(product_svg(card(colour=colour))).get("fill") == COLOURS[colour]


def test_colours_are_distinct_and_unknown_ones_are_neutral_grey() -> None:
    assert set(COLOURS) == set(_COLOURS)
    assert len(set(COLOURS.values())) == len(COLOURS)
    assert silhouette(product_svg(card(colour="chartreuse"))).get("fill") == UNKNOWN_COLOUR


@pytest.mark.parametrize("colour", ["white", "cream", "beige", "silver"])
def test_light_colours_get_a_dark_outline(colour: str) -> None:
    assert silhouette(product_svg(card(colour=colour))).get("stroke") == LIGHT_OUTLINE


@pytest.mark.parametrize("colour", ["black", "navy", "red", "green"])
def test_dark_colours_are_outlined_in_a_darker_shade_of_themselves(colour: str) -> None:
    outline = outline_hex(COLOURS[colour])
    assert outline != LIGHT_OUTLINE
    assert int(outline[1:], 16) < int(COLOURS[colour][1:], 16)


def test_user_text_is_escaped_and_the_svg_stays_valid_xml() -> None:
    hostile = 'Dress <script>alert("x")</script> & "friends" \'too\''
    svg = product_svg(ProductCard("P<1>", hostile, "<dress>", 'red" onload="x', "B&B", 10.0))
    assert "<script>" not in svg and 'onload="x' not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == hostile
    assert hostile in root.get("aria-label")
    assert family("<dress>") == GENERIC


def test_output_is_deterministic() -> None:
    assert product_svg(card("coat", "khaki")) == product_svg(card("coat", "khaki"))
