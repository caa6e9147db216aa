"""Windows time zones, as each release's answer file names them (facts as data).

Windows Server 2003 (`winnt.sif [GuiUnattended] TimeZone`) takes the numeric index
of Microsoft's "Time Zone Index Values" table; Windows Server 2008 and later
(`Microsoft-Windows-Shell-Setup/TimeZone`) take the time zone's standard name,
the key name under `HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Time Zones`.
A profile carries one `TimeZoneTable`: how its answer file names a zone, the zones its
setup knows, and what to say about a zone that came later. See docs/windows-2003.md and
docs/windows-2008.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

# index -> standard name, as Microsoft's "Time Zone Index Values" table spells it
# (learn.microsoft.com ms912391, Windows XP Embedded; the same table is in the XP/2003
# deploy.cab reference). Checked entry by entry against it and two independent copies.
INDEX_2003: Mapping[int, str] = MappingProxyType(
    {
        0: "Dateline Standard Time",
        1: "Samoa Standard Time",
        2: "Hawaiian Standard Time",
        3: "Alaskan Standard Time",
        4: "Pacific Standard Time",
        10: "Mountain Standard Time",
        13: "Mexico Standard Time 2",
        15: "U.S. Mountain Standard Time",
        20: "Central Standard Time",
        25: "Canada Central Standard Time",
        30: "Mexico Standard Time",
        33: "Central America Standard Time",
        35: "Eastern Standard Time",
        40: "U.S. Eastern Standard Time",
        45: "S.A. Pacific Standard Time",
        50: "Atlantic Standard Time",
        55: "S.A. Western Standard Time",
        56: "Pacific S.A. Standard Time",
        60: "Newfoundland Standard Time",
        65: "E. South America Standard Time",
        70: "S.A. Eastern Standard Time",
        73: "Greenland Standard Time",
        75: "Mid-Atlantic Standard Time",
        80: "Azores Standard Time",
        83: "Cape Verde Standard Time",
        85: "GMT Standard Time",
        90: "Greenwich Standard Time",
        95: "Central Europe Standard Time",
        100: "Central European Standard Time",
        105: "Romance Standard Time",
        110: "W. Europe Standard Time",
        113: "W. Central Africa Standard Time",
        115: "E. Europe Standard Time",
        120: "Egypt Standard Time",
        125: "FLE Standard Time",
        130: "GTB Standard Time",
        135: "Israel Standard Time",
        140: "South Africa Standard Time",
        145: "Russian Standard Time",
        150: "Arab Standard Time",
        155: "E. Africa Standard Time",
        158: "Arabic Standard Time",
        160: "Iran Standard Time",
        165: "Arabian Standard Time",
        170: "Caucasus Standard Time",
        175: "Transitional Islamic State of Afghanistan Standard Time",
        180: "Ekaterinburg Standard Time",
        185: "West Asia Standard Time",
        190: "India Standard Time",
        193: "Nepal Standard Time",
        195: "Central Asia Standard Time",
        200: "Sri Lanka Standard Time",
        201: "N. Central Asia Standard Time",
        203: "Myanmar Standard Time",
        205: "S.E. Asia Standard Time",
        207: "North Asia Standard Time",
        210: "China Standard Time",
        215: "Singapore Standard Time",
        220: "Taipei Standard Time",
        225: "W. Australia Standard Time",
        227: "North Asia East Standard Time",
        230: "Korea Standard Time",
        235: "Tokyo Standard Time",
        240: "Yakutsk Standard Time",
        245: "A.U.S. Central Standard Time",
        250: "Cen. Australia Standard Time",
        255: "A.U.S. Eastern Standard Time",
        260: "E. Australia Standard Time",
        265: "Tasmania Standard Time",
        270: "Vladivostok Standard Time",
        275: "West Pacific Standard Time",
        280: "Central Pacific Standard Time",
        285: "Fiji Standard Time",
        290: "New Zealand Standard Time",
        300: "Tonga Standard Time",
    }
)

# Standard names (registry keys under Time Zones) that Windows Server 2008 SP2 media
# know. Inferred from the Vista-era lists; the 2008 cumulative time zone updates added
# some after 2008 RTM (Morocco Standard Time in KB955839, December 2008, per Microsoft's
# KB960445), so RTM media may lack a few of these.
NAMES_2008: frozenset[str] = frozenset(
    {
        "Dateline Standard Time",
        "Samoa Standard Time",
        "Hawaiian Standard Time",
        "Alaskan Standard Time",
        "Pacific Standard Time",
        "Pacific Standard Time (Mexico)",
        "US Mountain Standard Time",
        "Mountain Standard Time (Mexico)",
        "Mountain Standard Time",
        "Central America Standard Time",
        "Central Standard Time",
        "Central Standard Time (Mexico)",
        "Canada Central Standard Time",
        "SA Pacific Standard Time",
        "Eastern Standard Time",
        "US Eastern Standard Time",
        "Venezuela Standard Time",
        "Atlantic Standard Time",
        "SA Western Standard Time",
        "Central Brazilian Standard Time",
        "Pacific SA Standard Time",
        "Newfoundland Standard Time",
        "E. South America Standard Time",
        "Argentina Standard Time",
        "SA Eastern Standard Time",
        "Greenland Standard Time",
        "Montevideo Standard Time",
        "Mid-Atlantic Standard Time",
        "Azores Standard Time",
        "Cape Verde Standard Time",
        "Morocco Standard Time",
        "GMT Standard Time",
        "Greenwich Standard Time",
        "W. Europe Standard Time",
        "Central Europe Standard Time",
        "Romance Standard Time",
        "Central European Standard Time",
        "W. Central Africa Standard Time",
        "Jordan Standard Time",
        "GTB Standard Time",
        "Middle East Standard Time",
        "Egypt Standard Time",
        "South Africa Standard Time",
        "FLE Standard Time",
        "Israel Standard Time",
        "E. Europe Standard Time",
        "Namibia Standard Time",
        "Arabic Standard Time",
        "Arab Standard Time",
        "Russian Standard Time",
        "E. Africa Standard Time",
        "Georgian Standard Time",
        "Iran Standard Time",
        "Arabian Standard Time",
        "Azerbaijan Standard Time",
        "Mauritius Standard Time",
        "Caucasus Standard Time",
        "Afghanistan Standard Time",
        "Ekaterinburg Standard Time",
        "Pakistan Standard Time",
        "West Asia Standard Time",
        "India Standard Time",
        "Sri Lanka Standard Time",
        "Nepal Standard Time",
        "Central Asia Standard Time",
        "N. Central Asia Standard Time",
        "Myanmar Standard Time",
        "SE Asia Standard Time",
        "North Asia Standard Time",
        "China Standard Time",
        "North Asia East Standard Time",
        "Singapore Standard Time",
        "W. Australia Standard Time",
        "Taipei Standard Time",
        "Tokyo Standard Time",
        "Korea Standard Time",
        "Yakutsk Standard Time",
        "Cen. Australia Standard Time",
        "AUS Central Standard Time",
        "E. Australia Standard Time",
        "AUS Eastern Standard Time",
        "West Pacific Standard Time",
        "Tasmania Standard Time",
        "Vladivostok Standard Time",
        "Central Pacific Standard Time",
        "New Zealand Standard Time",
        "Fiji Standard Time",
        "Tonga Standard Time",
    }
)

# Names Windows Server 2008 R2 (SP1) media add. "UTC" arrived with Windows 7 / 2008 R2
# (older systems got it from KB970653, August 2009, per Microsoft's KB973629). Zones
# that later updates created are left out, because setup validates TimeZone against
# the image's own registry: Kaliningrad and Magadan (Russia, 2011), Bahia (2012), Libya
# (2013), Turkey (2016).
NAMES_2008R2: frozenset[str] = NAMES_2008 | frozenset(
    {
        "UTC",
        "UTC-11",
        "UTC-02",
        "UTC+12",
        "Paraguay Standard Time",
        "Syria Standard Time",
        "Kamchatka Standard Time",
        "Bangladesh Standard Time",
        "Ulaanbaatar Standard Time",
    }
)

# Zones Windows created after Server 2008 R2 SP1, for the hint when one is asked for.
NAMES_AFTER_2008R2: frozenset[str] = frozenset(
    {
        "Kaliningrad Standard Time",
        "Magadan Standard Time",
        "Bahia Standard Time",
        "Libya Standard Time",
        "Turkey Standard Time",
    }
)


def _folded(name: str) -> str:
    # The index table writes "U.S. Mountain", "S.A. Pacific", "A.U.S. Central" where the
    # registry keys say "US Mountain", "SA Pacific", "AUS Central": accept both.
    return " ".join(name.replace(".", "").lower().split())


@dataclass(frozen=True)
class LaterZones:
    """Zones a release's setup does not know yet, and what to say when one is asked for
    (`{zone}` stands for the zone asked for)."""

    names: frozenset[str]
    hint: str


@dataclass(frozen=True)
class TimeZoneTable:
    """The time zones one release's setup knows, as its answer file names them.

    `style` "index": winnt.sif's number (any zone of `index`, given by number or by
    name); "name": the zone's standard name, one of `names` (matched case-blind).
    """

    style: Literal["index", "name"]
    names: frozenset[str]
    index: Mapping[int, str]
    example: str
    later: tuple[LaterZones, ...] = ()

    def resolve(self, value: str) -> str | None:
        """The zone as the answer file writes it (`110`, `W. Europe Standard Time`), or
        None when this release does not know it."""
        text = value.strip()
        if self.style == "index":
            if text.isdigit() and int(text) in self.index:
                return str(int(text))
            found = index_for_name(text, self.index)
            return None if found is None else str(found)
        folded = {n.lower(): n for n in self.names}
        return folded.get(value.lower())

    def hint(self, value: str) -> str:
        """What to do about a zone `resolve` refused."""
        for later in self.later:
            if value in later.names:
                return later.hint.format(zone=repr(value))
        return self.example


def index_for_name(name: str, index: Mapping[int, str] = INDEX_2003) -> int | None:
    """The 2003 index of a time zone, named as the index table or the registry spells it."""
    wanted = _folded(name)
    for number, standard in index.items():
        if _folded(standard) == wanted:
            return number
    return None


ZONES_2003 = TimeZoneTable(
    style="index",
    names=frozenset(INDEX_2003.values()),
    index=INDEX_2003,
    example="Use an index such as 085 (GMT), 035 (Eastern) or 110 (W. Europe), or its name "
    "such as 'W. Europe Standard Time'.",
)
_NAME_EXAMPLE = "Use a Windows time zone name such as 'W. Europe Standard Time'."
_AFTER_2008R2 = LaterZones(
    NAMES_AFTER_2008R2,
    "{zone} was created by a time zone update after Windows Server 2008 R2 SP1, so setup "
    "does not know it; pick the zone it was split from.",
)
ZONES_2008 = TimeZoneTable(
    style="name",
    names=NAMES_2008,
    index=MappingProxyType({}),
    example=_NAME_EXAMPLE,
    later=(
        LaterZones(
            NAMES_2008R2 - NAMES_2008,
            "{zone} arrived with Windows Server 2008 R2; use 'Greenwich Standard Time'.",
        ),
        _AFTER_2008R2,
    ),
)
ZONES_2008R2 = TimeZoneTable(
    style="name",
    names=NAMES_2008R2,
    index=MappingProxyType({}),
    example=_NAME_EXAMPLE,
    later=(_AFTER_2008R2,),
)

# Windows Server 2012 R2 and later know every 2008 R2 zone (Windows keeps the retired
# ones as "... - Old") and many that time zone updates added since. Which update reached
# which release's media is not listed here, so the modern releases accept the zones
# they all have, the 2008 R2 set, and say so for a later one.
ZONES_MODERN = TimeZoneTable(
    style="name",
    names=NAMES_2008R2,
    index=MappingProxyType({}),
    example=_NAME_EXAMPLE,
    later=(
        LaterZones(
            NAMES_AFTER_2008R2,
            "{zone} came with a time zone update after Windows Server 2008 R2 SP1; pvinstall "
            "does not record which later release's media have it, so it accepts the zones "
            "every one of them has: pick the zone it was split from.",
        ),
    ),
)
