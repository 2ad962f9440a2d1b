# Staff read times to the second, with the zone (TIME_ZONE, UTC by default): the admin's
# columns and read-only fields. Django's own formats fill in the rest.
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
