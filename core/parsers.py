import json

from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with absurdly deep nesting answered as a 400, not a 500, and a body
    it cannot read answered with a plain message.

    DRF's own message repeats Python's (``'utf-8' codec can't decode byte 0xff…``, ``use
    sys.set_int_max_str_digits() to increase the limit``): the parser's internals, not the
    client's mistake. Only a syntax error's line and column are passed on.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(_("JSON nested too deeply.")) from exc
        except ParseError as exc:
            cause = exc.__context__  # DRF raises its ParseError while handling the ValueError
            if not isinstance(cause, ValueError):  # e.g. its own "Unsupported charset" message
                raise
            raise ParseError(_not_json_message(cause)) from exc


def _not_json_message(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return _("The request body is not valid JSON (line %(line)d, column %(column)d).") % {
            "line": error.lineno,
            "column": error.colno,
        }
    return _("The request body is not valid JSON.")
