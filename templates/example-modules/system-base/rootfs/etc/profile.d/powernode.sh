# /etc/profile.d/powernode.sh: login shell defaults shipped by the system-base module.
# Sourced by /etc/profile for every login shell; keep it POSIX sh.

umask 027

export EDITOR="${EDITOR:-vi}"
export PAGER="${PAGER:-less}"
export LESS="${LESS:--FRX}"
export HISTCONTROL=ignoredups:ignorespace
export HISTSIZE=5000
export HISTTIMEFORMAT='%F %T '

if [ -r /etc/powernode-release ]; then
    # shellcheck disable=SC1091
    . /etc/powernode-release
    if [ -n "${PS1:-}" ] && [ -n "${BASH_VERSION:-}" ]; then
        PS1='\u@\h [${VARIANT_ID:-powernode}]:\w\$ '
    fi
fi
