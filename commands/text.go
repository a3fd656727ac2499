package commands

import "github.com/saasapi/saasapi"

// unreadable is the field error of a name that holds a control or format
// character (saasapi.IdentityText).
func unreadable(field string) saasapi.FieldError {
	return saasapi.FieldError{Field: field, Message: field + " must not contain control or format characters"}
}

// checkName appends to fields what is wrong with a name people read: its
// length (lengthErr when it is not lo..hi characters) or a control or format
// character in it.
func checkName(fields []saasapi.FieldError, name string, lo, hi int, lengthErr saasapi.FieldError) []saasapi.FieldError {
	if !lengthBetween(name, lo, hi) {
		return append(fields, lengthErr)
	}
	if _, ok := saasapi.IdentityText(name); !ok {
		return append(fields, unreadable(lengthErr.Field))
	}
	return fields
}
