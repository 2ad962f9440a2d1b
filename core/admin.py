"""Admin helpers every app's admin uses."""

from django.utils.html import format_html

THUMBNAIL_STYLE = "max-height:80px"


def thumbnail(file, *, link: bool = True) -> str:
    """An ``<img>`` of a stored image, linking to the full image; "-" when there is none."""
    if not file:
        return "-"
    url = file.url
    img = format_html('<img src="{}" style="{}" alt="">', url, THUMBNAIL_STYLE)
    return format_html('<a href="{}" target="_blank">{}</a>', url, img) if link else img
