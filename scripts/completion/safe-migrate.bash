# bash completion for safe-migrate
_safe_migrate()
{
    local cur prev cmds opts
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmds="init create upgrade downgrade current history check stamp sql backup list-backups
          verify restore prune drop-tables schema validate lint safety-check safe-migrate run
          recover roundtrip help"
    opts="--database-url --migrations-dir --backup-dir --config --verbose --quiet --json --yes
          --force --no-progress --lock-timeout --statement-lock-timeout --statement-timeout
          --allow-out-of-order --version --help --name --to --no-safety-backup --jobs --keep
          --output --start --end --expected --from-schema --dry-run --no-backup --validate
          --runs --discard --url --rehearse-url --no-owner --migrate --compression-level
          --sha256 --sha256-file --keep-within --keep-daily --accept-recorded-problems"
    case $prev in
        -m|--migrations-dir|-b|--backup-dir) COMPREPLY=($(compgen -d -- "$cur")); return;;
        -c|--config|--output|--expected|--from-schema|--sha256-file) COMPREPLY=($(compgen -f -- "$cur")); return;;
        verify|restore) COMPREPLY=($(compgen -f -X '!*.tar.zst' -- "$cur")); return;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
    fi
}
complete -F _safe_migrate safe-migrate
