"""Admin helpers every app's admin uses."""

from django.utils.html import format_html

from core.media import thumbnail_url

THUMBNAIL_STYLE = "max-height:80px;max-width:120px"


def thumbnail(file, *, link: bool = True) -> str:
    """A small rendition of a stored image, linking to the full image; "-" when there is none."""
    if not file:
        return "-"
    img = format_html('<img src="{}" style="{}" alt="" loading="lazy">', thumbnail_url(file), THUMBNAIL_STYLE)
    return format_html('<a href="{}" target="_blank">{}</a>', file.url, img) if link else img
