package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// serve's config file (--config): a TOML or YAML file whose keys are
// serve's flag names, applied beneath the flags and the environment. It is
// checked whole first, naming the line of an unknown key or a wrong type,
// then each setting is set on its flag.

// configEnv is --config's variable. It is named after the command, as a
// client command's own flags are, unlike serve's other flags: a config file
// is serve's alone, and a variable set for it must never reach a client
// command that may read a file of its own one day.
const configEnv = "HSMKMS_SERVE_CONFIG"

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", EnvVars: []string{configEnv},
		Usage: "TOML (.toml) or YAML (.yaml, .yml) file of serve's settings, keyed by flag name (listen = \"0.0.0.0:8443\"); " +
			"flags and variables override it; SIGHUP reloads it"}
}

// settingKind is the type of a setting's value: its flag's.
type settingKind int

const (
	stringSetting settingKind = iota
	boolSetting
	intSetting
	listSetting
)

func (k settingKind) String() string {
	switch k {
	case boolSetting:
		return "true or false"
	case intSetting:
		return "an integer"
	case listSetting:
		return "a list of strings"
	}
	return "a string"
}

// configKeys are the keys a config file may hold and their kinds: serve's
// flags (not --config, which names the file) and the global --log-level.
func configKeys() map[string]settingKind {
	keys := map[string]settingKind{"log-level": stringSetting}
	for _, f := range serveFlags() {
		var kind settingKind
		switch f.(type) {
		case *cli.StringFlag:
			kind = stringSetting
		case *cli.BoolFlag:
			kind = boolSetting
		case *cli.IntFlag:
			kind = intSetting
		case *cli.StringSliceFlag:
			kind = listSetting
		default:
			// A programming error every serve start and TestConfigKeys meet.
			panic(fmt.Sprintf("cli: serve flag --%s is a %T, which config files do not support", f.Names()[0], f))
		}
		keys[f.Names()[0]] = kind
	}
	return keys
}

// configError is what is wrong with a config file, at a line when one is
// known. It never quotes a value from the file, any of which may be a
// secret (a store URL holding its password): it names the key, and what
// kind of value it found. (go-toml's syntax errors show the one character
// where parsing stopped, no more.)
type configError struct {
	path string
	line int
	msg  string
}

func (e *configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("config %s line %d: %s", e.path, e.line, e.msg)
	}
	return fmt.Sprintf("config %s: %s", e.path, e.msg)
}

// configFile is a config file's settings, checked: each value is of its
// key's kind (string, bool, int or []string).
type configFile struct {
	path   string
	values map[string]any
}

// readConfig reads and checks the config file at path: its format by its
// extension, every key one of keys, every value of its key's kind.
func readConfig(path string, keys map[string]settingKind) (*configFile, error) {
	var parse func(string, []byte) ([]entry, error)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		parse = tomlEntries
	case ".yaml", ".yml":
		parse = yamlEntries
	default:
		return nil, &configError{path: path, msg: "unknown format: name the file .toml (TOML), .yaml or .yml (YAML)"}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, unwrapPath(err))
	}
	entries, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	return checkEntries(path, entries, keys)
}

// entry is one key of a config file: its line and its value as the
// format typed it.
type entry struct {
	key  string
	line int
	val  rawValue
}

// rawValue is a value as its format typed it, before it is checked
// against its key's kind.
type rawValue struct {
	// what it is, as an error names it: "a string", "an integer", …
	what string
	s    string
	b    bool
	i    int64
	list []rawValue
	// plain marks a YAML plain scalar that YAML took for a number or a
	// date: s is its text as written, which a string setting takes
	// (account-id: 000000000000).
	plain bool
}

const (
	aString  = "a string"
	aBool    = "true or false"
	anInt    = "an integer"
	aList    = "a list"
	aTable   = "a table"
	aFloat   = "a floating-point number"
	aDate    = "a date or time"
	noValue  = "empty (null)"
	tooLarge = "an integer out of range"
)

// checkEntries turns entries into a configFile: unknown and repeated keys
// are refused, and values not of their key's kind, each with its line.
func checkEntries(path string, entries []entry, keys map[string]settingKind) (*configFile, error) {
	values := map[string]any{}
	lines := map[string]int{}
	for _, e := range entries {
		kind, ok := keys[e.key]
		switch {
		case e.key == "config":
			return nil, &configError{path: path, line: e.line, msg: `"config" names this file: it is given as --config or ` + configEnv + `, never in the file`}
		case !ok:
			return nil, &configError{path: path, line: e.line, msg: unknownKey(e.key, keys)}
		}
		if first, dup := lines[e.key]; dup {
			return nil, &configError{path: path, line: e.line, msg: fmt.Sprintf("%q again (first on line %d)", e.key, first)}
		}
		lines[e.key] = e.line
		v, ok := convert(e.val, kind)
		if !ok {
			return nil, &configError{path: path, line: e.line, msg: fmt.Sprintf("%q must be %s, not %s", e.key, kind, found(e.val, kind))}
		}
		if list, ok := v.([]string); ok {
			// Set on the flag an item at a time, where a comma would
			// split it; no list setting has items that hold one.
			if i := slices.IndexFunc(list, func(s string) bool { return strings.Contains(s, ",") }); i >= 0 {
				return nil, &configError{path: path, line: e.line, msg: fmt.Sprintf("%q: item %q holds a comma; give each value as an item of its own", e.key, list[i])}
			}
		}
		if e.key == "log-level" && hclog.LevelFromString(v.(string)) == hclog.NoLevel {
			return nil, &configError{path: path, line: e.line, msg: `"log-level" must be trace, debug, info, warn or error`}
		}
		values[e.key] = v
	}
	return &configFile{path: path, values: values}, nil
}

// unknownKey says that serve has no flag key, and what the writer may
// have meant.
func unknownKey(key string, keys map[string]settingKind) string {
	msg := fmt.Sprintf("unknown key %q (serve has no --%s flag", key, key)
	if key == "pin" {
		// No flag takes the PIN itself, so no file does either.
		return msg + `; the PIN goes in the file that "pin-file" names, or in HSMKMS_PIN)`
	}
	if s := nearestKey(key, keys); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?)", s)
	}
	return msg + ")"
}

// nearestKey is the key of keys closest to key by edit distance, if it is
// close enough to be a typo of it.
func nearestKey(key string, keys map[string]settingKind) string {
	best, bestDist := "", 3 // two edits at most
	names := slices.Sorted(maps.Keys(keys))
	for _, k := range names {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// convert checks v against kind and returns it as the setting takes it.
func convert(v rawValue, kind settingKind) (any, bool) {
	switch kind {
	case stringSetting:
		if v.what == aString || (v.plain && (v.what == anInt || v.what == aFloat || v.what == aDate)) {
			return v.s, true
		}
	case boolSetting:
		if v.what == aBool {
			return v.b, true
		}
	case intSetting:
		if v.what == anInt && int64(int(v.i)) == v.i {
			return int(v.i), true
		}
	case listSetting:
		if v.what != aList {
			return nil, false
		}
		out := make([]string, 0, len(v.list))
		for _, item := range v.list {
			s, ok := convert(item, stringSetting)
			if !ok {
				return nil, false
			}
			out = append(out, s.(string))
		}
		return out, true
	}
	return nil, false
}

// found describes v, which is not of kind, for an error.
func found(v rawValue, kind settingKind) string {
	if kind == listSetting && v.what == aList {
		for _, item := range v.list {
			if _, ok := convert(item, stringSetting); !ok {
				return "a list holding " + item.what
			}
		}
	}
	return v.what
}

// tomlEntries parses a TOML document with go-toml's parser, which gives
// every key's position.
func tomlEntries(path string, data []byte) ([]entry, error) {
	var p unstable.Parser
	p.Reset(data)
	var out []entry
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			key, line := tomlKey(&p, e.Key())
			out = append(out, entry{key: key, line: line, val: tomlValue(e.Value())})
		case unstable.Table, unstable.ArrayTable:
			key, line := tomlKey(&p, e.Key())
			return nil, &configError{path: path, line: line,
				msg: fmt.Sprintf("table [%s]: serve's settings are keys at the top of the file, outside any table", key)}
		}
	}
	if err := p.Error(); err != nil {
		ce := &configError{path: path, msg: "not TOML: " + err.Error()}
		var pe *unstable.ParserError
		if errors.As(err, &pe) && pe.Highlight != nil {
			ce.line = p.Shape(p.Range(pe.Highlight)).Start.Line
		}
		return nil, ce
	}
	return out, nil
}

// tomlKey joins a (dotted) key's parts, and gives its line.
func tomlKey(p *unstable.Parser, it unstable.Iterator) (string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return strings.Join(parts, "."), line
}

func tomlValue(n *unstable.Node) rawValue {
	switch n.Kind {
	case unstable.String:
		return rawValue{what: aString, s: string(n.Data)}
	case unstable.Bool:
		return rawValue{what: aBool, b: string(n.Data) == "true"}
	case unstable.Integer:
		// The parser checked the syntax (no leading zeros; 0x, 0o and 0b
		// prefixes, underscores between digits): Go reads the same forms.
		i, err := strconv.ParseInt(strings.ReplaceAll(string(n.Data), "_", ""), 0, 64)
		if err != nil {
			return rawValue{what: tooLarge}
		}
		return rawValue{what: anInt, i: i}
	case unstable.Float:
		return rawValue{what: aFloat}
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return rawValue{what: aDate}
	case unstable.Array:
		v := rawValue{what: aList}
		for it := n.Children(); it.Next(); {
			v.list = append(v.list, tomlValue(it.Node()))
		}
		return v
	}
	return rawValue{what: aTable}
}

// yamlEntries parses a YAML document into yaml.v3's nodes, which carry
// their lines.
func yamlEntries(path string, data []byte) ([]entry, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file sets nothing
		}
		return nil, yamlError(path, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(path, err)
		}
		return nil, &configError{path: path, line: next.Line, msg: "a second YAML document: the file is one mapping of flag names to values"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &configError{path: path, line: root.Line, msg: "the file must be a mapping of flag names to values (listen: 0.0.0.0:8443)"}
	}
	var out []entry
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, &configError{path: path, line: k.Line, msg: "a key must be a flag name"}
		}
		out = append(out, entry{key: k.Value, line: k.Line, val: yamlValue(v)})
	}
	return out, nil
}

// yamlValue types a key's value; a list's items are typed without
// looking into them, since a setting's list holds strings: following the
// aliases of nested lists would take time exponential in the file's size
// ("billion laughs").
func yamlValue(n *yaml.Node) rawValue {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.SequenceNode {
		return yamlItem(n)
	}
	v := rawValue{what: aList}
	for _, item := range n.Content {
		if item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		v.list = append(v.list, yamlItem(item))
	}
	return v
}

// yamlItem types a value that is not followed further.
func yamlItem(n *yaml.Node) rawValue {
	switch n.Kind {
	case yaml.SequenceNode:
		return rawValue{what: aList}
	case yaml.MappingNode:
		return rawValue{what: aTable}
	case yaml.ScalarNode:
	default:
		return rawValue{what: "a YAML " + n.Tag}
	}
	plain := n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
	switch n.ShortTag() {
	case "!!str":
		return rawValue{what: aString, s: n.Value}
	case "!!bool":
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil {
			return rawValue{what: "a malformed !!bool"}
		}
		return rawValue{what: aBool, b: b}
	case "!!int":
		// yaml.v3 resolves integers the same way: underscores dropped,
		// then Go's prefixes.
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			return rawValue{what: tooLarge, s: n.Value, plain: plain}
		}
		return rawValue{what: anInt, i: i, s: n.Value, plain: plain}
	case "!!float":
		return rawValue{what: aFloat, s: n.Value, plain: plain}
	case "!!timestamp":
		return rawValue{what: aDate, s: n.Value, plain: plain}
	case "!!null":
		return rawValue{what: noValue}
	}
	return rawValue{what: "a YAML " + n.ShortTag()}
}

// yamlError is a YAML syntax error at its line: yaml.v3 says
// "yaml: line N: what".
func yamlError(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	ce := &configError{path: path, msg: "not YAML: " + msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, what, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				ce.line, ce.msg = line, "not YAML: "+what
			}
		}
	}
	return ce
}

// serveSettings are serve's settings that a config file may give: which
// ones a flag or a variable gives, and what each is now. On SIGHUP they
// tell what the re-read file changes.
type serveSettings struct {
	// path is the config file, "" without one.
	path string
	keys map[string]settingKind
	// explicit are the settings a flag or a variable gives: the file
	// never changes them.
	explicit map[string]bool
	// base are the other settings as they are without the file: where a
	// key deleted from the file goes back to.
	base map[string]any
	// current are the settings in effect.
	current map[string]any
}

// loadSettings reads --config, when given, and applies it to c beneath
// the flags and the environment. A file that is not valid is a usage
// error (exit 2) naming the line.
func loadSettings(c *cli.Context) (*serveSettings, error) {
	s := &serveSettings{path: c.String("config"), keys: configKeys(), explicit: map[string]bool{}, base: map[string]any{}, current: map[string]any{}}
	for name, kind := range s.keys {
		if givenOutsideFile(c, name) {
			s.explicit[name] = true
		} else {
			s.base[name] = settingValue(c, name, kind)
		}
	}
	if s.path != "" {
		f, err := readConfig(s.path, s.keys)
		if err != nil {
			return nil, startError(err)
		}
		if err := s.apply(c, f); err != nil {
			return nil, err
		}
	}
	for name, kind := range s.keys {
		s.current[name] = settingValue(c, name, kind)
	}
	return s, nil
}

// startError makes a config file's error an exit code: a file not valid
// is a usage error; a missing one is not found (4), as an input file is.
func startError(err error) error {
	var ce *configError
	if errors.As(err, &ce) {
		return cli.Exit("hsmkms: "+err.Error(), ExitUsage)
	}
	return err
}

// apply sets c's flags from f, leaving alone those a flag or a variable
// gives. --log-level is the application's flag (with a hidden copy on
// every command, and its variable on the application's only): c.Set finds
// it on the command, where the handlers read it through globalString.
//
// A list is set an item at a time: the first Set of a slice flag replaces
// its default, each next one appends. A slice flag splits what it is set
// to at commas; readConfig refuses items that hold one.
func (s *serveSettings) apply(c *cli.Context, f *configFile) error {
	for _, name := range slices.Sorted(maps.Keys(f.values)) {
		if s.explicit[name] {
			continue
		}
		var err error
		switch v := f.values[name].(type) {
		case []string:
			for _, item := range v {
				if err = c.Set(name, item); err != nil {
					break
				}
			}
		case bool:
			err = c.Set(name, strconv.FormatBool(v))
		case int:
			err = c.Set(name, strconv.Itoa(v))
		case string:
			err = c.Set(name, v)
		default:
			err = fmt.Errorf("a value of type %T", v)
		}
		if err != nil {
			return fmt.Errorf("config %s: %s: %w", f.path, name, err)
		}
	}
	return nil
}

// givenOutsideFile reports whether a flag or a variable gives setting
// name: then it wins over the file.
func givenOutsideFile(c *cli.Context, name string) bool {
	if name == "log-level" {
		for _, ctx := range c.Lineage() {
			if ctx.IsSet(name) {
				return true
			}
		}
		return false
	}
	if c.IsSet(name) {
		return true
	}
	// A variable that is set, even empty, gives the setting.
	for _, f := range c.Command.Flags {
		if ef, ok := f.(interface{ GetEnvVars() []string }); ok && slices.Contains(f.Names(), name) {
			for _, v := range ef.GetEnvVars() {
				if _, set := os.LookupEnv(v); set {
					return true
				}
			}
		}
	}
	return false
}

// settingValue is setting name's value in c.
func settingValue(c *cli.Context, name string, kind settingKind) any {
	switch kind {
	case boolSetting:
		return c.Bool(name)
	case intSetting:
		return c.Int(name)
	case listSetting:
		return slices.Clone(c.StringSlice(name))
	}
	if name == "log-level" {
		return globalString(c, name, "warn")
	}
	return c.String(name)
}

// reread reads the config file again and returns the settings whose value
// it changes, by name: a key whose value differs from the one in effect,
// or a key deleted from the file (back to its default). Settings a flag or
// a variable gives are never among them.
func (s *serveSettings) reread() (map[string]any, error) {
	f, err := readConfig(s.path, s.keys)
	if err != nil {
		return nil, err
	}
	changes := map[string]any{}
	for name := range s.keys {
		if s.explicit[name] {
			continue
		}
		v, inFile := f.values[name]
		if !inFile {
			v = s.base[name]
		}
		if !sameSetting(v, s.current[name]) {
			changes[name] = v
		}
	}
	return changes, nil
}

// sameSetting reports whether a and b are the same setting's value; an
// empty list is no list.
func sameSetting(a, b any) bool {
	if la, ok := a.([]string); ok {
		lb, _ := b.([]string)
		return slices.Equal(la, lb)
	}
	return a == b
}
