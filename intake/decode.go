package intake

import (
	"strconv"
	"unicode/utf8"
)

// fastBody is what decodeFast reads of a webhook: webhookBody's fields,
// each string a range of the body (not yet copied).
type fastBody struct {
	timestamp int64
	event     span
	hasUser   bool
	user      [userFields]span
	active    *bool
}

// span is a string's content in the body, [start, end); start < 0 when the
// key was absent or null.
type span struct{ start, end int }

// The user's string fields, in the order of userKeys.
const (
	fAccountID = iota
	fAccountType
	fName
	fKey
	fEmail
	fDisplayName
	userFields
)

var userKeys = [userFields]string{"accountId", "accountType", "name", "key", "emailAddress", "displayName"}

// maxFastDepth: deeper documents go to encoding/json (which allows 10,000).
const maxFastDepth = 64

// decodeFast decodes the usual webhook exactly as json.Unmarshal into
// webhookBody would, without reflection: a JSON object whose keys are
// spelled as webhookBody's tags (each at most once) and whose wanted values
// are strings needing no unescaping (valid UTF-8, no backslash), integers,
// true, false or null. Values of other keys are checked as JSON and skipped.
// ok is false for anything else, malformed documents included: the caller
// then decodes with encoding/json, which gives the same result for the
// documents decodeFast takes (FuzzDecodeIsEncodingJSON) and names the error.
func decodeFast(body []byte) (wb fastBody, ok bool) {
	s := scanner{b: body}
	wb.event.start = -1
	for i := range wb.user {
		wb.user[i].start = -1
	}
	var seen [3]bool // timestamp, webhookEvent, user
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "timestamp":
			if !first(&seen[0]) {
				return false
			}
			if s.null() {
				return true
			}
			var isInt bool
			start := s.i
			if !s.number(&isInt) || !isInt {
				return false
			}
			n, err := strconv.ParseInt(string(body[start:s.i]), 10, 64)
			wb.timestamp = n
			return err == nil
		case "webhookEvent":
			if !first(&seen[1]) {
				return false
			}
			return s.plainStringOrNull(&wb.event)
		case "user":
			if !first(&seen[2]) {
				return false
			}
			if s.null() {
				return true
			}
			wb.hasUser = true
			return s.userObject(&wb)
		}
		return !foldsTo(key, "timestamp", "webhookEvent", "user") && s.skip(1)
	})
	if !ok {
		return wb, false
	}
	s.space()
	return wb, s.i == len(body)
}

// first marks a key seen, and reports whether it was not already (a
// repeated key goes to encoding/json, where the last one wins).
func first(seen *bool) bool {
	if *seen {
		return false
	}
	*seen = true
	return true
}

// userObject reads the user object at s.i into wb.
func (s *scanner) userObject(wb *fastBody) bool {
	var seen [userFields + 1]bool // the strings, then active
	return s.object(func(key []byte) bool {
		for f, k := range userKeys {
			if string(key) == k {
				if !first(&seen[f]) {
					return false
				}
				return s.plainStringOrNull(&wb.user[f])
			}
		}
		if string(key) == "active" {
			if !first(&seen[userFields]) {
				return false
			}
			switch {
			case s.literal("true"):
				wb.active = new(true)
			case s.literal("false"):
				wb.active = new(false)
			default: // null leaves it unset; a string goes to activeFlag.UnmarshalJSON
				return s.null()
			}
			return true
		}
		return !foldsTo(key, userKeys[:]...) && !foldsTo(key, "active") && s.skip(2)
	})
}

// foldsTo reports whether encoding/json would match key (ASCII, as object
// checks) to one of the field names case-insensitively.
func foldsTo(key []byte, names ...string) bool {
	for _, n := range names {
		if len(key) == len(n) && asciiEqualFold(key, n) {
			return true
		}
	}
	return false
}

func asciiEqualFold(a []byte, b string) bool {
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// scanner walks a JSON document; every method returns false on anything it
// does not take, and the document then goes to encoding/json.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads an object at s.i (after space), calling member with each key
// once s.i is at its value (after space); member reads the value.
// Keys must be printable ASCII without escapes.
func (s *scanner) object(member func(key []byte) bool) bool {
	return s.list('{', '}', func() bool {
		var key span
		if !s.str(&key) || !asciiKey(s.b[key.start:key.end]) {
			return false
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		return member(s.b[key.start:key.end])
	})
}

// list reads open, items separated by commas, and closing (after space);
// item reads one, starting after space.
func (s *scanner) list(open, closing byte, item func() bool) bool {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != open {
		return false
	}
	s.i++
	s.space()
	if s.i < len(s.b) && s.b[s.i] == closing {
		s.i++
		return true
	}
	for {
		s.space()
		if !item() {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case closing:
			s.i++
			return true
		default:
			return false
		}
	}
}

func asciiKey(k []byte) bool {
	for _, c := range k {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}

// str reads a string at s.i into sp; escapes are checked, not decoded.
func (s *scanner) str(sp *span) bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	start := s.i + 1
	for i := start; i < len(s.b); {
		switch c := s.b[i]; {
		case c == '"':
			*sp = span{start, i}
			s.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(s.b) {
				return false
			}
			switch s.b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[i+2 : i+6] {
					if _, ok := unhex(h); !ok {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++
		}
	}
	return false
}

// plainStringOrNull reads a string that encoding/json would copy unchanged
// (no escape, valid UTF-8), or null (sp left unset).
func (s *scanner) plainStringOrNull(sp *span) bool {
	if s.null() {
		return true
	}
	if !s.str(sp) {
		return false
	}
	for _, c := range s.b[sp.start:sp.end] {
		if c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			return utf8.Valid(s.b[sp.start:sp.end])
		}
	}
	return true
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

func (s *scanner) null() bool { return s.literal("null") }

// number reads a JSON number; isInt is set when it has neither fraction nor exponent.
func (s *scanner) number(isInt *bool) bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	*isInt = true
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
		*isInt = false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
		*isInt = false
	}
	s.i = i
	return true
}

// skip checks and passes over any JSON value at s.i; depth is its nesting.
func (s *scanner) skip(depth int) bool {
	if s.i >= len(s.b) || depth > maxFastDepth {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		var sp span
		return s.str(&sp)
	case c == '{':
		return s.object(func([]byte) bool { return s.skip(depth + 1) })
	case c == '[':
		return s.list('[', ']', func() bool { return s.skip(depth + 1) })
	case c == '-' || '0' <= c && c <= '9':
		var isInt bool
		return s.number(&isInt)
	}
	return s.literal("true") || s.literal("false") || s.null()
}
