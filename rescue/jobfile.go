package rescue

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// maxJobFile bounds a job file: a job is a handful of commands.
const maxJobFile = 64 << 10

// ParseJobFile reads a job file: one lifeboat command per line, its words
// separated by blanks as in a shell (single quotes keep everything,
// double quotes keep blanks and let a backslash escape " and \, a
// backslash outside quotes escapes the next character, a backslash at the
// end of a line continues it), "#" at the start of a word starting a
// comment. A leading word "lifeboat" is dropped, so lines may be copied
// from a terminal. Blank and comment lines are skipped; nothing else of a
// shell (variables, globs, pipes) is understood, and the characters that
// would mean one (| & ; < > ` $) are refused outside quotes rather than
// taken literally.
func ParseJobFile(text string) ([][]string, error) {
	if len(text) > maxJobFile {
		return nil, fmt.Errorf("job file: %d bytes, over %d", len(text), maxJobFile)
	}
	var cmds [][]string
	var words []string
	var word strings.Builder
	inWord := false
	line, startLine := 1, 1
	end := func() error {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
		return nil
	}
	flush := func() {
		_ = end()
		if len(words) > 0 && words[0] == "lifeboat" {
			words = words[1:]
		}
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	r := []rune(text)
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == '\n':
			flush()
			line++
			startLine = line
		case c == ' ' || c == '\t' || c == '\r':
			_ = end()
		case c == '#' && !inWord:
			for i < len(r) && r[i] != '\n' {
				i++
			}
			i-- // the newline ends the command
		case c == '\\':
			if i+1 < len(r) && r[i+1] == '\n' {
				i++
				line++
				continue
			}
			if i+1 >= len(r) {
				return nil, fmt.Errorf("job file line %d: backslash at the end of the file", line)
			}
			i++
			word.WriteRune(r[i])
			inWord = true
		case c == '\'':
			j := i + 1
			for j < len(r) && r[j] != '\'' {
				j++
			}
			if j >= len(r) {
				return nil, fmt.Errorf("job file line %d: unterminated single quote", startLine)
			}
			word.WriteString(string(r[i+1 : j]))
			line += strings.Count(string(r[i+1:j]), "\n")
			inWord = true
			i = j
		case c == '"':
			j := i + 1
			for ; j < len(r) && r[j] != '"'; j++ {
				if r[j] == '\\' && j+1 < len(r) && (r[j+1] == '"' || r[j+1] == '\\') {
					j++
				}
				if r[j] == '\n' {
					line++
				}
				word.WriteRune(r[j])
			}
			if j >= len(r) {
				return nil, fmt.Errorf("job file line %d: unterminated double quote", startLine)
			}
			inWord = true
			i = j
		case strings.ContainsRune("|&;<>`$", c):
			return nil, fmt.Errorf("job file line %d: %q is shell syntax, which job files do not have (quote it to mean the character)", line, c)
		case c < ' ' || c == 0x7f:
			return nil, fmt.Errorf("job file line %d: control character %U", line, c)
		default:
			word.WriteRune(c)
			inWord = true
		}
	}
	flush()
	if len(cmds) == 0 {
		return nil, errors.New("job file holds no command")
	}
	return cmds, nil
}

// ParseJobSpec splits lifeboat.job's value, [DEVICE:]PATH. PATH is absolute
// within the file system that holds it. DEVICE is LABEL=name, UUID=uuid or
// a /dev path; without it every file system the appliance can mount read
// only is searched and the file must be on exactly one.
func ParseJobSpec(spec string) (device, file string, err error) {
	if spec == "" {
		return "", "", errors.New("lifeboat.job is empty")
	}
	file = spec
	if !strings.HasPrefix(spec, "/") || strings.HasPrefix(spec, "/dev/") {
		var ok bool
		device, file, ok = strings.Cut(spec, ":")
		if !ok {
			return "", "", fmt.Errorf("lifeboat.job=%q: want an absolute path, or DEVICE:PATH", spec)
		}
		switch {
		case strings.HasPrefix(device, "LABEL=") && len(device) > len("LABEL="):
		case strings.HasPrefix(device, "UUID=") && len(device) > len("UUID="):
		case strings.HasPrefix(device, "/dev/") && path.Clean(device) == device:
		default:
			return "", "", fmt.Errorf("lifeboat.job=%q: device %q: want LABEL=name, UUID=uuid or a /dev path", spec, device)
		}
	}
	if !strings.HasPrefix(file, "/") || path.Clean(file) != file || file == "/" {
		return "", "", fmt.Errorf("lifeboat.job=%q: the file must be a clean absolute path", spec)
	}
	return device, file, nil
}
