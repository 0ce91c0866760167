"""Product pictures for a shop without photos: each card is a small inline SVG, drawn from its data.

The synthetic shop has no images, so a card shows its category's silhouette filled with its colour:
enough to tell a navy coat from a red dress at a glance. Categories share a few family shapes (tops,
bottoms, outerwear, shoes, bag, dress); a small stroke detail tells the members of a family apart
(a shirt's collar, a hoodie's pocket). A category from any other catalogue (MovieLens genres, a
retailer's own names) gets a neutral tag, an unknown colour a neutral grey. Everything from the card
is escaped, since titles are user data, and the output is valid XML and deterministic.
"""

from __future__ import annotations

from html import escape

from fashionrec.online.views import ProductCard

VIEW_WIDTH = 120
VIEW_HEIGHT = 150
BACKGROUND = "#f4f1ec"  # the card's canvas; also the tag's punched hole
OUTLINE_WIDTH = 2
DETAIL_WIDTH = 1.5
UNKNOWN_COLOUR = "#9e9e9e"
LIGHT_OUTLINE = "#6b6b6b"  # light fills (white, cream, ...) would vanish on the canvas without it
# Relative luminance (0 black .. 1 white) from which a fill counts as light and gets LIGHT_OUTLINE.
LIGHT_LUMINANCE = 0.6
DARKEN = 0.65  # a dark fill's outline is the fill at this brightness: a soft edge, not a cartoon line
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709: how much red, green and blue each add to lightness
CHANNEL_MAX = 255
GENERIC = "generic"

COLOURS: dict[str, str] = {
    "black": "#1f1f1f",
    "white": "#fafafa",
    "navy": "#1f2a44",
    "grey": "#8a8d91",
    "beige": "#d8c3a5",
    "red": "#b3261e",
    "pink": "#e8a0b4",
    "green": "#3f6e4a",
    "blue": "#3a6ea5",
    "yellow": "#e9c46a",
    "brown": "#7b5136",
    "purple": "#6a4c93",
    "orange": "#e07a3f",
    "cream": "#f3e9d2",
    "khaki": "#a39b6b",
    "silver": "#c0c4c8",
}

# Each family's silhouette, filled, in a VIEW_WIDTH x VIEW_HEIGHT box.
SHAPES: dict[str, str] = {
    "tee": "M40 20 L24 25 L6 52 L21 62 L31 50 L31 130 L89 130 L89 50 L99 62 L114 52 L96 25 L80 20 "
           "Q60 36 40 20 Z",
    "top": "M40 20 L24 25 L9 98 L22 101 L32 56 L32 130 L88 130 L88 56 L98 101 L111 98 L96 25 L80 20 "
           "Q60 36 40 20 Z",
    "outerwear": "M40 16 L23 23 L8 110 L21 113 L32 62 L32 138 L88 138 L88 62 L99 113 L112 110 L97 23 "
                 "L80 16 L60 58 Z",
    "trousers": "M35 15 L85 15 L91 140 L66 140 L60 55 L54 140 L29 140 Z",
    "shorts": "M32 35 L88 35 L95 100 L66 104 L60 62 L54 104 L25 100 Z",
    "skirt": "M40 28 L80 28 L102 124 L18 124 Z",
    "dress": "M46 12 L52 12 Q60 24 68 12 L74 12 L78 42 L71 60 L100 138 L20 138 L49 60 L42 42 Z",
    "trainer": "M12 108 L13 74 Q30 72 44 62 L60 60 Q74 76 98 82 Q112 86 110 100 L110 108 Z",
    "boot": "M30 22 L62 22 L64 92 Q94 96 104 110 L104 126 L28 126 Z",
    "sandal": "M12 104 Q60 96 110 100 L110 112 Q60 118 12 112 Z M30 101 Q45 70 62 99 L55 99 Q45 82 37 101 Z "
              "M67 99 Q81 76 95 100 L88 100 Q81 88 74 99 Z",
    "bag": "M25 58 L95 58 L102 136 L18 136 Z M42 58 Q42 24 60 24 Q78 24 78 58 L71 58 Q71 32 60 32 Q49 32 49 58 Z",
    GENERIC: "M22 48 L80 48 L106 75 L80 102 L22 102 Z",
}

FAMILIES: dict[str, str] = {
    "t-shirt": "tee",
    "shirt": "top", "jumper": "top", "hoodie": "top", "blouse": "top",
    "jacket": "outerwear", "coat": "outerwear",
    "jeans": "trousers", "trousers": "trousers",
    "shorts": "shorts",
    "skirt": "skirt",
    "dress": "dress",
    "trainers": "trainer", "boots": "boot", "sandals": "sandal",
    "bag": "bag",
}

# Stroke-only marks over the silhouette that tell a family's members apart.
DETAILS: dict[str, str] = {
    "shirt": "M40 20 L50 34 L60 27 L70 34 L80 20 M60 30 L60 128",  # collar and button placket
    "jumper": "M32 122 L88 122 M40 20 Q60 40 80 20",  # ribbed hem and crew neck
    "hoodie": "M40 20 Q60 4 80 20 M44 96 L76 96 L80 116 L40 116 Z",  # hood and kangaroo pocket
    "blouse": "M52 30 Q60 40 68 30 M60 34 L54 44 M60 34 L66 44",  # a bow at the neck
    "jacket": "M60 58 L60 138 M32 112 L88 112",  # zip and short waistband
    "coat": "M32 92 L88 92 M52 78 L52 130 M68 78 L68 130",  # belt and double-breasted buttons
    "jeans": "M35 26 L85 26 M42 26 Q44 38 52 38 M78 26 Q76 38 68 38",  # waistband and front pockets
    "trousers": "M35 24 L85 24 M45 40 L47 140 M75 40 L73 140",  # waistband and pressed creases
    "shorts": "M32 44 L88 44",
    "skirt": "M40 36 L80 36",
    "dress": "M48 60 L72 60",
    "trainers": "M12 100 L110 100 M46 68 L54 76 M52 65 L60 73",  # sole and laces
    "boots": "M28 116 L104 116 M62 30 L62 86",  # sole and side zip
    "sandals": "M12 108 L110 106",
    "bag": "M22 80 L98 80",
}
GENERIC_HOLE = (88, 75, 5)  # the tag's punched hole: centre x, centre y, radius


def product_svg(card: ProductCard) -> str:
    """The card's picture as an inline ``<svg>`` element: its family's silhouette in its colour."""
    fill = colour_hex(card.colour)
    outline = outline_hex(fill)
    category = _key(card.category)
    label = escape(f"{card.title} ({card.colour} {card.category})")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="product-svg" viewBox="0 0 {VIEW_WIDTH} {VIEW_HEIGHT}" '
        f'role="img" aria-label="{label}" data-family="{escape(family(card.category))}">',
        f"<title>{escape(card.title)}</title>",
        f'<rect width="{VIEW_WIDTH}" height="{VIEW_HEIGHT}" fill="{BACKGROUND}"/>',
        f'<path d="{SHAPES[family(card.category)]}" fill="{fill}" stroke="{outline}" '
        f'stroke-width="{OUTLINE_WIDTH}" stroke-linejoin="round"/>',
        *_marks(category, outline),
        "</svg>",
    ]
    return "".join(parts)


def family(category: str) -> str:
    """The family whose silhouette draws ``category``; GENERIC for one the embedded shop doesn't sell."""
    return FAMILIES.get(_key(category), GENERIC)


def colour_hex(colour: str) -> str:
    """The hex fill for a colour name; a neutral grey for one not in COLOURS, so no card is left blank."""
    return COLOURS.get(_key(colour), UNKNOWN_COLOUR)


def outline_hex(fill: str) -> str:
    """A light fill gets a fixed dark outline (a white shirt must show on the canvas); a dark one a
    darker shade of itself."""
    red, green, blue = _channels(fill)
    if _luminance(red, green, blue) >= LIGHT_LUMINANCE:
        return LIGHT_OUTLINE
    return "#" + "".join(f"{round(c * DARKEN):02x}" for c in (red, green, blue))


def _marks(category: str, outline: str) -> list[str]:
    """The category's detail strokes, or the generic tag's hole."""
    if category in DETAILS:
        return [f'<path d="{DETAILS[category]}" fill="none" stroke="{outline}" stroke-width="{DETAIL_WIDTH}" '
                f'stroke-linecap="round" stroke-linejoin="round"/>']
    if category not in FAMILIES:
        x, y, radius = GENERIC_HOLE
        return [f'<circle cx="{x}" cy="{y}" r="{radius}" fill="{BACKGROUND}" stroke="{outline}" '
                f'stroke-width="{DETAIL_WIDTH}"/>']
    return []


def _key(name: str) -> str:
    """Catalogues differ in case and stray spaces ("T-Shirt "); the tables are keyed lower-case."""
    return name.strip().lower()


def _channels(hex_colour: str) -> tuple[int, int, int]:
    digits = hex_colour.lstrip("#")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(red: int, green: int, blue: int) -> float:
    """Rec. 709 luma of 8-bit channels, 0..1: how light the fill looks (green counts most)."""
    return sum(weight * channel for weight, channel in zip(LUMA_WEIGHTS, (red, green, blue), strict=True)) / CHANNEL_MAX
