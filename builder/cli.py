"""The command line: parse, call, print, map errors to exit codes. No logic lives here.

Exit codes (docs/design.md §5): 0 success, 1 the build or install failed, 2 invalid input,
130 interrupted. With --json exactly one JSON document goes to stdout (the result
or the error list); human progress and messages go to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click import Command, Context
from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.core import TyperCommand, _TyperParameter

from builder import interrupts
from builder.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, InputError, PvError
from builder.monitor import choose_monitor, route_warnings
from builder.vm.uri import DEFAULT_URI

if TYPE_CHECKING:
    from typer._click import HelpFormatter

    from builder.convert.steps import Mode

# Each command imports what it runs when it runs (`pvinstall --help` loads neither the
# settings and profile tables nor libvirt, jinja2 or pycdlib; `profiles`, `drivers` and
# `inspect` never load libvirt, jinja2 or pycdlib's writers), and the help is plain text:
# rich alone takes a tenth of a second to import.
app = typer.Typer(
    rich_markup_mode=None,
    name="pvinstall",
    help="Unattended Windows Server installs on KVM/libvirt with virtio drivers from the "
    "first boot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="A profile (see `pvinstall profiles`) or osinfo id."),
]
ArchOption = Annotated[
    str | None, typer.Option("--arch", help="x86 or x64, with an osinfo id such as win2k8.")
]


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback when something fails.")
    ] = False,
) -> None:
    """pvinstall builds answer files, driver media and the libvirt domain for a hands-off
    Windows Server install on virtio disk and network."""


def _print_json(document: Any) -> None:
    interrupts.finish()  # one document: a late Ctrl-C must not print a second one
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


@app.command("profiles")
def profiles_command(json_output: JsonOption = False) -> None:
    """List the Windows targets pvinstall builds for, with their facts."""
    from builder.windows.profiles import PROFILES

    if json_output:
        _print_json({"profiles": [p.as_json() for p in PROFILES.values()]})
        return
    rows = [
        [
            p.name,
            p.title,
            f"NT {p.version_text}",
            ", ".join(p.answer_files),
            p.virtio_win_folder,
            p.virtio_model,
            ", ".join((p.osinfo_id, *p.osinfo_aliases)),
        ]
        for p in PROFILES.values()
    ]
    header = ["PROFILE", "WINDOWS", "VERSION", "ANSWER FILES", "VIRTIO-WIN", "DEVICES", "OSINFO"]
    typer.echo(_table(rows, header))
    typer.echo("\nStorage driver path to setup:")
    for p in PROFILES.values():
        typer.echo(f"  {p.name}: {p.storage_prose}")


@app.command("drivers")
def drivers_command(
    source: Annotated[
        str | None,
        typer.Argument(
            help="virtio-win ISO, driver folder or .vfd image (default: $VIRTIO_WIN, "
            "drivers/virtio-win.iso, /usr/share/virtio-win/...)."
        ),
    ] = None,
    profile: ProfileOption = None,
    arch: ArchOption = None,
    show_rejected: Annotated[
        bool, typer.Option("--rejected", help="Also list every INF not selected, and why.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List the driver packages in a source, or the selection for a profile."""
    from builder import sources
    from builder.virtio.facts import load_driver_facts
    from builder.virtio.packages import scan_json, scan_source
    from builder.virtio.selection import driverset_json, select_drivers
    from builder.virtio.trust import apply_signatures
    from builder.windows.profiles import resolve_profile

    target = resolve_profile(profile, arch) if profile else None
    path = sources.find_source(source)
    facts = load_driver_facts()
    with sources.open_source(path) as opened:
        scan = scan_source(opened, facts)
        if target is None:
            document = scan_json(scan)
            if json_output:
                _print_json(document)
                return
            _print_scan(document)
            return
        selection = select_drivers(scan, target, facts)
        # A listing reports what a build would refuse as warnings.
        selection = apply_signatures(
            selection, sources.read_catalogs(opened, selection), strict=False
        )
        document = driverset_json(selection, sources.driver_digests(opened, selection))
    if json_output:
        _print_json(document)
        return
    _print_selection(document, show_rejected=show_rejected)


class _BuildCommand(TyperCommand):
    """`build`, whose help ends with the table of settings. The table is made when that
    help is shown: every other command starts without loading builder.config."""

    def format_epilog(self, ctx: Context, formatter: HelpFormatter) -> None:
        from builder.config import settings_help

        self.epilog = (
            "Settings (--config FILE, PVINSTALL_<KEY> in the environment, --set KEY=VALUE; "
            "--set beats the environment, which beats the file):\n\n"
            + "\n\n".join(f"  {line}" for line in settings_help().splitlines())
        )
        super().format_epilog(ctx, formatter)


@app.command("inspect")
def inspect_command(
    iso: Annotated[
        Path,
        typer.Argument(help="A Windows Server install DVD (2008 and later) or 2003 CD image."),
    ],
    json_output: JsonOption = False,
) -> None:
    """Show what pvinstall sees on a Windows install DVD or 2003 CD, read in place: the
    release, the images of install.wim, the boot images, the profile it is for."""
    from builder.media.iso9660 import read_install_media

    document = read_install_media(iso).as_json()
    if json_output:
        _print_json(document)
        return
    _print_media(document)


def _print_media(document: dict[str, Any]) -> None:
    where = f"{document['path']} (label {document['label'] or '-'}"
    where += ", UDF)" if document["udf"] else ", ISO 9660)"
    profiles = ", ".join(document["profiles"]) or "none (no profile installs it)"
    if document["setup"] == "windows-setup":
        version = document["version"]
        versions = ", ".join(version) if isinstance(version, list) else version
        fmt = document["format"]
        typer.echo(f"{where}: Windows Setup DVD")
        typer.echo(f"  Windows {versions} {', '.join(document['arch'])}")
        typer.echo(
            f"  install image: {document['install_image']} ({fmt['kind']}, {fmt['compression']})"
        )
        typer.echo(f"  profile: {profiles}\n")
        rows = [
            [
                str(i["index"]),
                i["name"],
                i["edition_id"],
                i["installation_type"],
                ", ".join(i["languages"]),
            ]
            for i in document["images"]
        ]
        typer.echo(_table(rows, ["INDEX", "NAME", "EDITION", "INSTALLATION", "LANGUAGES"]))
    else:
        typer.echo(f"{where}: Windows Server 2003 text-mode setup CD")
        versions = ", ".join(f"NT {v}" for v in document["version"]) or "unknown"
        sp = f" {document['service_pack']}" if document["service_pack"] else ""
        typer.echo(f"  {versions}{sp} {document['arch']}, setup in {document['setup_dir']}")
        typer.echo(f"  tag files: {', '.join(document['tags']) or 'none'}")
        typer.echo(f"  profile: {profiles}")
    typer.echo("\nBoot images (El Torito):")
    for boot in document["boot"]:
        file = boot["file"] or "(in no directory)"
        size = f", {boot['size']} bytes" if boot["size"] is not None else ""
        typer.echo(
            f"  {boot['platform']:5} {boot['emulation']}, {boot['sectors']} sectors at LBA "
            f"{boot['lba']}: {file}{size}"
        )
    if not document["boot"]:
        typer.echo("  none: the disc does not boot")
    if document["setup"] == "windows-setup":
        state = "present" if document["efisys_noprompt"] else "missing"
        typer.echo(f"efi/microsoft/boot/efisys_noprompt.bin: {state}")


@app.command("build", cls=_BuildCommand)
def build_command(
    profile: Annotated[
        str | None,
        typer.Argument(
            help="A profile (see `pvinstall profiles`) or osinfo id; default: the one "
            "--windows-iso is for."
        ),
    ] = None,
    *,
    arch: ArchOption = None,
    drivers: Annotated[
        str | None,
        typer.Option(
            "--drivers",
            help="virtio-win ISO, driver folder or .vfd image (default: "
            "$VIRTIO_WIN, drivers/virtio-win.iso, /usr/share/virtio-win/...).",
        ),
    ] = None,
    windows_iso: Annotated[
        Path | None, typer.Option("--windows-iso", help="The Windows install CD/DVD image.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default out/NAME)."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Domain name (default pvinstall-PROFILE)."),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML file of settings (listed below).")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE, a setting (repeatable; listed below)."),
    ] = None,
    json_output: JsonOption = False,
    print_xml: Annotated[
        bool, typer.Option("--print-xml", help="Print the domain XML on stdout.")
    ] = False,
    define: Annotated[
        bool, typer.Option("--define", help="Also create the disks and define the domain.")
    ] = False,
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="Define, start, wait for setup to power the guest "
            "off, then detach the install media.",
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Undefine a shut-off domain of the same name and recreate its disks.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="With --replace: stop that domain first if it runs."),
    ] = False,
    connect: Annotated[str, typer.Option("--connect", help="libvirt URI.")] = DEFAULT_URI,
    domain_type: Annotated[
        str | None,
        typer.Option("--domain-type", help="kvm or qemu (default: kvm when offered)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Minutes to wait for setup (profile default: 120)."),
    ] = None,
    export_only: Annotated[
        bool,
        typer.Option(
            "--export-only",
            help="With --install: undefine the domain and remove its disks once the "
            "template is exported.",
        ),
    ] = False,
    hash_inputs: Annotated[
        bool,
        typer.Option(
            "--hash-inputs",
            help="Also record the sha256 of every input image, each read whole for it "
            "(otherwise an image read in place is recorded by its size, mtime and volume "
            "id, and the digests of the files used from it).",
        ),
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Build again even when OUT already holds the build of these inputs and settings.",
        ),
    ] = False,
) -> None:
    """Write the answer files, driver media and domain XML for a hands-off install;
    with --define or --install, also act on libvirt (and export the template). A build
    whose inputs and settings did not change reuses OUT's outputs, verified against its
    manifest."""
    from builder import cache
    from builder.options import BuildOptions

    if json_output and print_xml:
        raise InputError(
            "--json and --print-xml both print on stdout.",
            "Use one; the domain XML is also in OUT/domain.xml.",
            key="--print-xml",
        )
    options = BuildOptions(
        profile=profile,
        arch=arch,
        drivers=drivers,
        windows_iso=windows_iso,
        out=out,
        name=name,
        config_file=config_file,
        sets=tuple(sets or ()),
        define=define,
        install=install,
        replace=replace,
        force=force,
        export_only=export_only,
        connect=connect,
        domain_type=domain_type,
        timeout_minutes=timeout,
        hash_inputs=hash_inputs,
        use_cache=not no_cache,
    )
    monitor = choose_monitor(json_output=json_output)
    # A rebuild that reuses OUT needs only the cache: the build's modules (jinja2,
    # libvirt, pycdlib) are loaded when there is something to build. Without a named
    # profile, the cache needs the CD's volume descriptors: the build looks then.
    looked_up = None
    if options.profile is not None:
        looked_up = cache.look_up(
            options, os.environ, monitor, lambda: cache.named_profile(options)
        )
    if looked_up is not None and looked_up.result is not None:
        result = looked_up.result
    else:
        from builder import pipeline

        result = pipeline.run_build(options, monitor, looked_up=looked_up)
    interrupts.finish()
    if json_output:
        _print_json(result.manifest)
        return
    if print_xml:
        sys.stdout.write(result.domain_xml)
    where = result.out_dir
    if result.reused:
        typer.echo(
            f"pvinstall: {where} already holds this build: nothing it is made from changed, "
            "and its files are as its manifest lists them (--no-cache builds it again)",
            err=True,
        )
    else:
        typer.echo(
            f"pvinstall: wrote {len(result.manifest['outputs'])} files and manifest.json "
            f"to {where}",
            err=True,
        )
    template = result.manifest.get("template")
    if result.installed and template:
        kept = (
            "removed (--export-only)"
            if result.manifest["domain"].get("removed")
            else "defined, shut off, without install media"
        )
        disk = (
            f"volume {template['pool']}/{template['volume']}"
            if "volume" in template
            else where / template["disk"]
        )
        typer.echo(
            f"pvinstall: template {disk} ({template['format']}, "
            f"{'generalized' if template['generalized'] else 'not generalized'}); "
            f"{result.manifest['domain']['name']} is {kept}. Clone it with: pvinstall "
            f"clone {where} NAME",
            err=True,
        )
    elif result.installed:
        typer.echo(
            f"pvinstall: {result.manifest['domain']['name']} is installed and shut "
            "off, without install media: a golden template.",
            err=True,
        )
    elif result.next_step:
        typer.echo(f"pvinstall: {result.next_step}", err=True)


def _print_scan(document: dict[str, Any]) -> None:
    source = document["source"]
    typer.echo(f"{source['path']} ({source['kind']}, label {source['label'] or '-'})")
    rows = [
        [
            p["name"],
            p["inf"],
            ",".join(p["arch"]),
            ", ".join(p["decorations"]) or "-",
            p["driver_ver"] or "-",
            "yes" if p["signed"] else "NO",
            "yes" if p["complete"] else "missing " + ", ".join(p["missing"]),
        ]
        for p in document["packages"]
    ]
    header = ["DRIVER", "INF", "ARCH", "DECORATIONS", "DRIVERVER", "CATALOG", "COMPLETE"]
    typer.echo(_table(rows, header))
    for broken in document["unreadable"]:
        typer.echo(f"unreadable: {broken['inf']}: {broken['reason']}", err=True)
    for warning in document["warnings"]:
        typer.echo(f"warning: {warning}", err=True)


def _print_selection(document: dict[str, Any], *, show_rejected: bool) -> None:
    source = document["source"]
    typer.echo(f"{document['profile']} from {source['path']} ({source['kind']})")
    rows = [
        [
            d["name"],
            d["inf"],
            d["decoration"] or "(undecorated)",
            d["driver_ver"],
            "boot" if d["boot_critical"] else "",
            str(len(d["files"])),
            "+".join(s["digest"] for s in d["signatures"]) or "-",
            _signer_text(d["signer"]),
        ]
        for d in document["selected"]
    ]
    header = ["DRIVER", "INF", "DECORATION", "DRIVERVER", "BOOT", "FILES", "DIGEST", "SIGNER"]
    typer.echo(_table(rows, header))
    signers = {s["sha1"]: s for d in document["selected"] for s in d["signers"]}
    if signers:
        typer.echo("\nSigners:")
        for sha1, signer in signers.items():
            test = " (self-signed)" if signer["self_signed"] else ""
            typer.echo(f"  {sha1}  {signer['subject']}{test}")
            typer.echo(f"      issued by {signer['issuer']}, serial {signer['serial']}")
    for installer in document["installers"]:
        typer.echo(f"installer {installer['name']}: {installer['path']}")
    rejected = document["rejected"]
    if show_rejected:
        typer.echo("\nRejected:")
        for item in rejected:
            typer.echo(f"  {item['inf']}: {item['reason']}")
    elif rejected:
        typer.echo(f"\n{len(rejected)} other INF files not selected (--rejected lists why).")
    for warning in document["warnings"]:
        typer.echo(f"warning: {warning}", err=True)


def _signer_text(signer: dict[str, Any] | None) -> str:
    if signer is None:
        return "unsigned"
    name = signer["common_name"] or signer["organization"] or signer["subject"]
    return f"{name} (self-signed)" if signer["self_signed"] else str(name)


# -- existing guests: convert and attach ---------------------------------------------------

ConnectOption = Annotated[
    str, typer.Option("--connect", "-c", help="The libvirt URI of the hypervisor.")
]
DomainArgument = Annotated[
    str,
    typer.Argument(help="The name of the libvirt domain.", metavar="DOMAIN", show_default=False),
]


def _storage_pool_option(what: str) -> Any:
    return typer.Option(
        "--storage-pool",
        help=f"{what} a volume of this storage pool of the host (on a remote host the "
        "default is the pool that holds the guest's boot disk).",
        show_default=False,
    )


def _print_outcome(lines: Sequence[str]) -> None:
    for line in lines:
        typer.echo(line, err=True)


@app.command("convert")
def convert_command(
    name: DomainArgument,
    *,
    connect: ConnectOption = DEFAULT_URI,
    profile: ProfileOption = None,
    arch: ArchOption = None,
    drivers: Annotated[
        str | None,
        typer.Option(
            "--drivers",
            help="virtio-win ISO, folder or .vfd for the drivers CD "
            "(default: $VIRTIO_WIN, drivers/virtio-win.iso, /usr/share/virtio-win).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where the backup, the record, the drivers ISO and the "
            "temporary disk go (default: $PVINSTALL_STATE_DIR, else "
            "$XDG_STATE_HOME/pvinstall/DOMAIN).",
        ),
    ] = None,
    storage_pool: Annotated[
        str | None, _storage_pool_option("Make the drivers ISO and the temporary disk each")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the new definition; change nothing.")
    ] = False,
    finish: Annotated[
        bool,
        typer.Option(
            "--finish",
            help="Phase two: remove the temporary disk and the drivers CD, switch the boot disk.",
        ),
    ] = False,
    drivers_installed: Annotated[
        bool,
        typer.Option(
            "--drivers-installed",
            help="The guest has the virtio drivers: switch everything at once.",
        ),
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Restore the definition from before convert.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Switch an existing guest's IDE/SATA/SCSI disks and e1000/rtl8139 NICs to virtio,
    safely: staged by default (the boot disk moves once Windows has the driver)."""
    from builder.convert import steps as convert_steps

    modes = [
        flag
        for flag, on in (
            ("--finish", finish),
            ("--drivers-installed", drivers_installed),
            ("--rollback", rollback),
        )
        if on
    ]
    if len(modes) > 1:
        raise InputError(
            f"{' and '.join(modes)} cannot be combined.",
            "Give one of --finish, --drivers-installed and --rollback.",
            key=modes[1],
        )
    mode: Mode = "staged"
    if finish:
        mode = "finish"
    elif drivers_installed:
        mode = "drivers-installed"
    elif rollback:
        mode = "rollback"
    options = convert_steps.ConvertOptions(
        name=name,
        uri=connect,
        profile=profile,
        arch=arch,
        drivers=drivers,
        out=out,
        mode=mode,
        dry_run=dry_run,
        storage_pool=storage_pool,
    )
    outcome = convert_steps.run_convert(options, choose_monitor(json_output=json_output))
    interrupts.finish()
    if json_output:
        _print_json(outcome.as_json())
        return
    if dry_run and outcome.xml:
        sys.stdout.write(outcome.xml)
    _print_outcome(outcome.summary())


@app.command("attach")
def attach_command(
    name: DomainArgument,
    kind: Annotated[str, typer.Argument(help="disk or nic.", metavar="KIND", show_default=False)],
    *,
    size: Annotated[
        int | None, typer.Option("--size", help="disk: create a new qcow2 of this many GiB.")
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--source", help="disk: attach this existing image.")
    ] = None,
    image_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="disk --source: raw or qcow2 (default: read from the image; a qcow2 "
            "backing chain must stay in the image's folder).",
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option("--network", help="nic: a libvirt network, or 'user' (default: default)."),
    ] = None,
    connect: ConnectOption = DEFAULT_URI,
    profile: ProfileOption = None,
    arch: ArchOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="disk --size: create the image here instead of next to the boot disk."
        ),
    ] = None,
    storage_pool: Annotated[
        str | None, _storage_pool_option("disk --size: create the new disk as")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Add a virtio disk or NIC (the model for the guest's Windows) within the 28 PCI slots,
    to the definition and, where the hypervisor allows, to the running guest."""
    from builder.convert import steps as convert_steps

    if kind not in ("disk", "nic"):
        raise InputError(f"cannot attach {kind!r}.", "Attach a disk or a nic.", key="KIND")
    options = convert_steps.AttachOptions(
        name=name,
        kind="disk" if kind == "disk" else "nic",
        uri=connect,
        profile=profile,
        arch=arch,
        size_gib=size,
        source=source,
        image_format=image_format,
        network=network,
        out=out,
        storage_pool=storage_pool,
    )
    outcome = convert_steps.run_attach(options, choose_monitor(json_output=json_output))
    interrupts.finish()
    if json_output:
        _print_json(outcome.as_json())
        return
    _print_outcome(outcome.summary())


@app.command("clone")
def clone_command(
    template: Annotated[
        str,
        typer.Argument(
            help="An OUT directory of `pvinstall build --install`, or a shut-off domain.",
            metavar="TEMPLATE",
            show_default=False,
        ),
    ],
    name: Annotated[
        str, typer.Argument(help="The clone's domain name.", metavar="NAME", show_default=False)
    ],
    *,
    connect: ConnectOption = DEFAULT_URI,
    full: Annotated[
        bool,
        typer.Option("--full", help="Copy the template instead of a linked qcow2 overlay."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where the clone's disks go (default out/NAME); a template volume's clone "
            "gets volumes of its pool instead (here only its serial log, on a local connection).",
        ),
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="Start the clone once defined.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Define a new domain from a golden template: a linked clone (a qcow2 overlay on the
    read-only template disk, or on the template volume of `export = pool`, in its pool)
    or, with --full, a copy; its own name, UUID and MACs."""
    from builder import clone as clone_mod

    options = clone_mod.CloneOptions(
        template=template, name=name, connect=connect, full=full, out=out, start=start
    )
    document = clone_mod.run_clone(options, choose_monitor(json_output=json_output))
    interrupts.finish()
    if json_output:
        _print_json(document)
        return
    kind = "linked clone of" if document["linked"] else "copy of"
    made = document["template"]
    of = f"the volume {made['pool']}/{made['volume']}" if "volume" in made else made["disk"]
    typer.echo(
        f"pvinstall: {name} is defined on {document['uri']}, a {kind} "
        f"{of} (disk {document['disk']})" + ("; started." if start else "."),
        err=True,
    )


def _report(error: PvError, *, json_output: bool) -> None:
    if json_output:
        _print_json(error.as_json())
    label = "invalid input" if error.exit_code == EXIT_INVALID else "failed"
    problems = error.problems
    if len(problems) == 1:
        typer.echo(f"pvinstall: {label}: {problems[0]}", err=True)
        return
    typer.echo(f"pvinstall: {label}: {len(problems)} problems:", err=True)
    for problem in problems:
        typer.echo(f"  - {problem}", err=True)


def _error_document(
    kind: str, exit_code: int, message: str, hint: str | None = None, key: str = ""
) -> dict[str, Any]:
    """The error document of --json for what is not a PvError (the same shape)."""
    return {
        "error": {
            "kind": kind,
            "exit_code": exit_code,
            "problems": [{"key": key, "message": message, "hint": hint}],
        }
    }


def _interrupted(*, json_output: bool) -> int:
    interrupts.finish()
    code = interrupts.exit_code()
    signum = code - 128
    name = signal.Signals(signum).name if signum in signal.valid_signals() else "signal"
    message = f"interrupted ({name})"
    if json_output:
        _print_json(
            _error_document(
                "interrupted",
                code,
                message,
                "OUT is as it was before, or holds the new build complete; the next run "
                "removes what the interrupted one left.",
            )
        )
    typer.echo(f"pvinstall: {message}", err=True)
    return code


def _usage_key(usage: typer.TyperException) -> str:
    """The option or argument a usage error is about, when it says."""
    for attribute in ("option_name", "param_hint"):
        value = getattr(usage, attribute, None)
        if isinstance(value, str) and value:
            return value.strip("'\"")
    param = getattr(usage, "param", None)
    opts = getattr(param, "opts", None)
    if isinstance(opts, list) and opts:
        return str(opts[0])
    return ""


def _usage(usage: typer.TyperException, *, json_output: bool) -> int:
    code = getattr(usage, "exit_code", EXIT_INVALID)
    code = code if isinstance(code, int) else EXIT_INVALID
    if json_output:
        ctx = getattr(usage, "ctx", None)
        command = getattr(ctx, "command_path", "pvinstall") if ctx is not None else "pvinstall"
        _print_json(
            _error_document(
                "usage",
                code,
                usage.format_message(),
                f"Try '{command} --help' for help.",
                key=_usage_key(usage),
            )
        )
    show = getattr(usage, "show", None)
    if callable(show):
        show()
    else:
        typer.echo(f"pvinstall: {usage.format_message()}", err=True)
    return code


@dataclass(frozen=True)
class _PlainCoercion(RuntimeParam):
    """typer 0.29 coerces every value of every parameter with a pydantic TypeAdapter it
    builds on first use: importing pydantic and building the adapters of one build's
    options is a tenth of a second, most of a rebuild that reuses its outputs. A value
    that is already what the annotation asks for (a str for str, a list of str for
    list[str], a path that passes typer's own checks for Path) is taken as typer would
    return it; any other value goes to typer's coercion, which gives its result or its
    exact error."""

    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        annotation = self.annotation
        if annotation is str and isinstance(value, str):
            return value
        if annotation is bool and isinstance(value, bool):
            return value
        if (
            annotation == list[str]
            and isinstance(value, list | tuple)
            and all(isinstance(item, str) for item in value)
        ):
            return list(value)
        if annotation is Path and self.parameter_info.path_type is None and isinstance(value, str):
            try:
                return coerce_cli_path(
                    Path(value), self.parameter_info, path_type=Path, param=param, ctx=ctx
                )
            except BadParameter:
                pass  # typer's own coercion words the error
        typer_coercion = build_runtime_param(self.descriptor)
        return typer_coercion._coerce_value(value, param=param, ctx=ctx)


def _command_line() -> Command:
    """The click command of `app`, its parameters (and each command's --help, which
    click makes once per command) coerced by `_PlainCoercion`."""
    command = typer.main.get_command(app)
    commands = [command, *getattr(command, "commands", {}).values()]
    for each in commands:
        for param in [*each.params, each.get_help_option(Context(each))]:
            if isinstance(param, _TyperParameter):
                descriptor = param.type_descriptor
                param._runtime_param = _PlainCoercion(
                    parameter_info=descriptor.parameter_info,
                    annotation=descriptor.annotation,
                    descriptor=descriptor,
                )
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (the console script calls this through
    builder/entry.py, which routes the stop signals first).

    With --json exactly one document reaches stdout whatever happens: the result, or
    the error document for invalid input, a failure, a usage error, an internal error
    or an interruption (`error.kind`: input, build, usage, internal, interrupted)."""
    interrupts.install()
    interrupts.reset()  # one run's work (tests run several in one process)
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    json_output = "--json" in args
    with route_warnings(choose_monitor(json_output=json_output)):
        try:
            result = _command_line()(args=args, prog_name="pvinstall", standalone_mode=False)
        except PvError as error:
            interrupts.finish()
            if debug:
                traceback.print_exc()
            _report(error, json_output=json_output)
            return error.exit_code
        except (KeyboardInterrupt, typer.Abort):
            return _interrupted(json_output=json_output)
        except typer.Exit as done:
            return int(done.exit_code)
        except typer.TyperException as usage:
            interrupts.finish()
            return _usage(usage, json_output=json_output)
        except Exception as unexpected:
            interrupts.finish()
            if debug:
                raise
            message = f"internal error: {type(unexpected).__name__}: {unexpected}"
            hint = "Run with --debug for a traceback, and please report it."
            if json_output:
                _print_json(_error_document("internal", EXIT_FAILED, message, hint))
            typer.echo(f"pvinstall: {message} ({hint[0].lower()}{hint[1:-1]})", err=True)
            return EXIT_FAILED
    code = int(result) if isinstance(result, int) else 0
    if code == EXIT_INTERRUPTED:
        # typer turns Ctrl-C inside a command into a quiet exit code 130.
        return _interrupted(json_output=json_output)
    return code
