#!/bin/sh
# Voltbook's first boot on a Raspberry Pi (docs/pi-image.md). `voltbook-fw image` puts this file
# on the SD card's boot partition and appends to cmdline.txt, as Raspberry Pi Imager does,
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
# so systemd runs it once, as root, in place of the normal boot, then reboots. It installs
# voltbook/bundle.tar the way `voltbook-fw install` does (the release signature and every file's
# SHA-256 are checked before anything is written; side by side; the `current` link), enables
# the units, makes the `voltbook` user and its data folder, removes its own hook from
# cmdline.txt and leaves a message on the console and at login: what to type next
# (`voltbook-edge provision`). Whatever happens it removes the hook (no boot loop) and exits 0;
# after a failure the message says why and how to run it again.
# ROOT (default /), BOOT (default /boot/firmware) and PYTHON (default python3) let a test run
# it against folders.
set -u

ROOT=${ROOT:-/}
BOOT=${BOOT:-/boot/firmware}
PYTHON=${PYTHON:-python3}
R=${ROOT%/}
FILES=$BOOT/voltbook
LOG=$FILES/firstboot.log
WORK=

say() { printf '%s\n' "$*" | tee -a "$LOG"; }

unhook() {
    # Exactly our words: the rest of the line (root=PARTUUID=..., anyone else's) is kept.
    sed -i 's| systemd\.run=/boot/firmware/firstrun\.sh systemd\.run_success_action=reboot systemd\.unit=kernel-command-line\.target||' "$BOOT/cmdline.txt"
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
    sync
}
trap unhook EXIT

tell() {  # the console before login (/etc/issue.d) and the message after it (/etc/motd.d)
    mkdir -p "$R/etc/issue.d" "$R/etc/motd.d"
    printf '\n%s\n\n' "$1" > "$R/etc/issue.d/voltbook.issue"
    printf '\n%s\n\n' "$1" > "$R/etc/motd.d/voltbook"
    say "$1"
}

fail() {
    tell "Voltbook first boot FAILED: $1
Nothing of Voltbook was switched on. The log: $LOG
Fix the cause, then run it again:  sudo sh $BOOT/firstrun.sh"
    exit 0
}

setting() { sed -n "s/^$1=//p" "$FILES/settings.conf" | head -n 1; }
id_of() { awk -F: -v name="$2" '$1 == name { print $3 }' "$R/etc/$1"; }

say "Voltbook first boot, $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
[ -f "$FILES/bundle.tar" ] || fail "$FILES/bundle.tar is missing"
WORK=$(mktemp -d) || fail "cannot make a temporary folder"

# A new box has no Voltbook: the installer runs out of the bundle's own wheels, and checks the
# release signature and every file's hash before it writes anything under ROOT. A first boot
# cut short after the switch (power lost) finds its version running and carries on from there.
state=$("$PYTHON" - "$FILES/bundle.tar" "$WORK/lib" "$R/opt/voltbook/current" 2>> "$LOG" <<'EOF'
import json, sys, tarfile, zipfile
bundle_file, lib, current = sys.argv[1:]
with tarfile.open(bundle_file, "r:") as bundle:
    wanted = json.load(bundle.extractfile("manifest.json"))["version"]
    for member in bundle.getmembers():
        if member.isfile() and member.name.startswith("wheels/") and member.name.endswith(".whl"):
            with zipfile.ZipFile(bundle.extractfile(member)) as wheel:
                wheel.extractall(lib)
try:
    with open(current + "/manifest.json", "rb") as running:
        print("running" if json.load(running)["version"] == wanted else "install")
except FileNotFoundError:
    print("install")
EOF
) || fail "cannot unpack the installer from $FILES/bundle.tar: write the image to the card again"
if [ "$state" = running ]; then
    say "this bundle's version already runs (a first boot cut short): carrying on"
elif ! PYTHONPATH="$WORK/lib" "$PYTHON" -m voltbook_fw.install "$FILES/bundle.tar" \
        --root "$ROOT" --release-pub "$FILES/release.pub" > "$WORK/install.out" 2>&1; then
    cat "$WORK/install.out" >> "$LOG"
    fail "$(tail -n 1 "$WORK/install.out")"
else
    cat "$WORK/install.out" >> "$LOG"
fi

groups=dialout
for group in gpio spi i2c; do  # the LoRa HAT's SPI and GPIO, where the OS has them
    if [ -n "$(id_of group "$group")" ]; then groups="$groups,$group"; fi
done
if [ -z "$(id_of passwd voltbook)" ]; then
    useradd ${R:+--prefix "$R"} --system --user-group --groups "$groups" \
        --home-dir /var/lib/voltbook --no-create-home --shell /usr/sbin/nologin voltbook \
        >> "$LOG" 2>&1 || fail "cannot create the voltbook user"
fi
gid=$(id_of group voltbook)
install -d -m 0750 "$R/var/lib/voltbook" && chown "$(id_of passwd voltbook):$gid" \
    "$R/var/lib/voltbook" || fail "cannot make /var/lib/voltbook"
# The runtime writes its files here (site.toml, config.json, keys): group-writable, but sticky,
# so it can never replace root's release.pub, which decides what the updater installs.
install -d "$R/etc/voltbook" && chown "0:$gid" "$R/etc/voltbook" \
    && chmod 1770 "$R/etc/voltbook" || fail "cannot set up /etc/voltbook"

units=$R/etc/systemd/system
mkdir -p "$units/multi-user.target.wants" "$units/voltbook-edge.service.d"
for unit in voltbook-edge.service voltbook-updater.service; do
    [ -f "$units/$unit" ] || fail "the bundle installed no $unit"
    # What `systemctl enable` does for WantedBy=multi-user.target, with no systemd running.
    ln -sf "/etc/systemd/system/$unit" "$units/multi-user.target.wants/$unit"
done
cat > "$units/voltbook-edge.service.d/10-provisioned.conf" <<'EOF'
# Written by Voltbook's first boot: the runtime starts once `voltbook-edge provision` has
# written site.toml (then: systemctl start voltbook-edge).
[Unit]
ConditionPathExists=/etc/voltbook/site.toml
EOF
mkdir -p "$R/usr/local/bin"
for tool in voltbook-edge voltbook-fw; do
    ln -sf "/opt/voltbook/current/venv/bin/$tool" "$R/usr/local/bin/$tool"
done

if [ -f "$FILES/claim.token" ]; then  # passed with --token: off the card, readable by root only
    install -m 0600 "$FILES/claim.token" "$R/etc/voltbook/claim.token" || fail "cannot keep the token"
    rm -f "$FILES/claim.token"
fi
token='<TOKEN>'
if [ -f "$R/etc/voltbook/claim.token" ]; then token='"$(sudo cat /etc/voltbook/claim.token)"'; fi
tell "Voltbook (bundle $(basename "$(readlink "$R/opt/voltbook/current")")) is installed and waits for its identity.
Log in, then type (the token comes from: voltbook-fw claim --site '$(setting site)'):

  sudo -u voltbook voltbook-edge provision --cloud $(setting cloud) --site '$(setting site)' --token $token

then commission the buses (docs/pi-image.md) and start it:  sudo systemctl start voltbook-edge"
rm -f "$FILES/bundle.tar" "$BOOT/firstrun.sh"
exit 0
