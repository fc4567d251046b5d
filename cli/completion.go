package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// The shell scripts ask hsmkms itself for the words that may come next
// (urfave/cli's --generate-bash-completion), so that they follow the
// command tree of the binary they complete.
const (
	bashCompletion = `# bash completion for hsmkms: source it, or put it in bash-completion's directory.
_hsmkms_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local ask="${words[*]} --generate-bash-completion"
  [[ "$cur" == -* ]] && ask="${words[*]} ${cur} --generate-bash-completion"
  COMPREPLY=($(compgen -W "$(eval "$ask" 2>/dev/null)" -- "$cur"))
}
complete -o default -F _hsmkms_complete hsmkms
`
	zshCompletion = `#compdef hsmkms
# zsh completion for hsmkms: put it in a directory of $fpath as _hsmkms.
_hsmkms() {
  local -a next
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    next=("${(@f)$(${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    next=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n "${next[1]}" ]]; then _describe 'hsmkms' next; else _files; fi
}
compdef _hsmkms hsmkms
`
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Example:\n" +
			"  hsmkms completion bash > /etc/bash_completion.d/hsmkms",
		Action: func(c *cli.Context) error {
			var script string
			switch c.Args().First() {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				script = s
			default:
				return usagef("completion needs bash, zsh or fish, not %q", c.Args().First())
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (troff), made from the command tree",
		Description: "Example:\n" +
			"  hsmkms man > /usr/local/share/man/man1/hsmkms.1",
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}
