# Shell functions for .ci/setup-libvirtd (the tests' daemon) and .ci/start-libvirtd
# (the main job's): is libvirtd running, does qemu:///system answer, and starting or
# restarting the daemons the way this machine runs them. Sourced, not run.
#
# The way a machine runs them: under systemd (PID 1; /run/systemd/system exists) the
# units of libvirt-daemon-system; without systemd the init scripts of
# libvirt-daemon-system-sysv through `service`; without either (a container, or only
# libvirt-daemon installed), the daemons themselves (`/usr/sbin/libvirtd -d`), which
# write the pid files the init scripts use.

LIBVIRTD_URI="qemu:///system"
LIBVIRTD_LOG=/var/log/libvirt/libvirtd.log
PATH="$PATH:/usr/sbin:/sbin"

# True when a process whose command name is exactly $1 runs (no procps needed:
# minimal Debian images have no pgrep).
running() {
    local comm
    for comm in /proc/[0-9]*/comm; do
        [[ "$(cat "$comm" 2>/dev/null)" == "$1" ]] && return 0
    done
    return 1
}

reachable() {
    command -v virsh >/dev/null 2>&1 && virsh -c "$LIBVIRTD_URI" version >/dev/null 2>&1
}

systemd_booted() {
    [[ -d /run/systemd/system ]]
}

# has_unit NAME: systemd runs this machine and knows NAME.service (libvirt-daemon-system).
has_unit() {
    systemd_booted && [[ -e "/lib/systemd/system/$1.service" ]]
}

# start_daemon NAME: start virtlogd or libvirtd the machine's way unless it runs.
start_daemon() {
    running "$1" && return 0
    if has_unit "$1"; then
        log "systemctl start $1.service"
        systemctl start "$1.service"
    elif [[ -x "/etc/init.d/$1" ]]; then
        log "service $1 start"
        service "$1" start
    else
        log "starting /usr/sbin/$1 -d"
        "/usr/sbin/$1" -d
    fi
}

# restart_libvirtd: stop the running libvirtd and start it again (guests keep running),
# so it reads its configuration anew.
restart_libvirtd() {
    if has_unit libvirtd && systemctl is-active --quiet libvirtd.service; then
        log "systemctl restart libvirtd.service"
        systemctl restart libvirtd.service
        return
    fi
    if [[ -x /etc/init.d/libvirtd ]]; then
        log "service libvirtd restart"
        service libvirtd restart
        return
    fi
    local pid deadline=$((SECONDS + 30))
    pid="$(cat /run/libvirtd.pid 2>/dev/null || true)"
    [[ -n "$pid" ]] || die "libvirtd runs without /run/libvirtd.pid; stop it, then run $0 again"
    log "restarting libvirtd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || die "libvirtd (pid $pid) did not stop within 30 s"
        sleep 0.2
    done
    /usr/sbin/libvirtd -d
}

# wait_reachable SECONDS: until qemu:///system answers, or fail with the log's tail.
wait_reachable() {
    local deadline=$((SECONDS + $1))
    until reachable; do
        if ((SECONDS >= deadline)); then
            log "libvirtd did not answer on $LIBVIRTD_URI within $1 s; last log lines:"
            tail -n 20 "$LIBVIRTD_LOG" >&2 2>/dev/null || true
            virsh -c "$LIBVIRTD_URI" version >&2 || true
            die "libvirtd not reachable"
        fi
        if ! running libvirtd; then
            sleep 1  # a restart may be between its stop and its start
            if ! running libvirtd; then
                log "libvirtd exited; last log lines:"
                tail -n 20 "$LIBVIRTD_LOG" >&2 2>/dev/null || true
                die "libvirtd is not running"
            fi
        fi
        sleep 0.5
    done
}
