package saasapi

import (
	"errors"
	"fmt"
)

// Error codes. The http package maps each code to a status once, in a table.
const (
	EINVALID         = "invalid"         // 422: input failed validation
	EUNAUTHENTICATED = "unauthenticated" // 401: no or bad credentials
	EFORBIDDEN       = "forbidden"       // 403: authenticated but not allowed
	ENOTFOUND        = "not_found"       // 404
	ECONFLICT        = "conflict"        // 409: state forbids the change
	EPRECONDITION    = "precondition"    // 412: If-Match no longer matches
	EUNAVAILABLE     = "unavailable"     // 503
	EINTERNAL        = "internal"        // 500
)

// Error is the domain error: a code for the transport to map, a message that
// is safe to show to the caller (the contract's exact detail strings), and
// optional field errors for validation failures.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
}

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error with one field error per failure.
func Invalid(message string, fields ...FieldError) *Error {
	return &Error{Code: EINVALID, Message: message, Fields: fields}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, otherwise
// EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err, or a generic one for
// errors that are not domain errors.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal server error"
}

// The exact detail strings of the HTTP contract. Commands return them inside
// *Error values so that every layer speaks the same words.
const (
	MsgAuthRequired         = "authentication required"
	MsgInvalidToken         = "invalid or expired access token"
	MsgInvalidTokenOrKey    = "invalid or expired access token or API key"
	MsgInvalidCredentials   = "invalid email or password"
	MsgEmailTaken           = "email is already registered"
	MsgOrgNotFound          = "organisation was not found"
	MsgOrgAccessDenied      = "organisation access denied"
	MsgInsufficientPerms    = "insufficient permissions for this organisation"
	MsgSlugTaken            = "organisation slug is already in use"
	MsgOrgFieldRequired     = "at least one organisation field must be provided"
	MsgUserNotFound         = "user was not found"
	MsgAlreadyMember        = "user is already a member of this organisation"
	MsgMembershipNotFound   = "membership was not found"
	MsgLastOwner            = "organisation must always have at least one owner"
	MsgProjectNotFound      = "project was not found"
	MsgProjectFieldRequired = "at least one project field must be provided"
	MsgAPIKeyNotFound       = "api key was not found"
	MsgIdempotencyMismatch  = "idempotency key was already used with a different request body"
	MsgStale                = "resource has changed since it was read"
	MsgValidation           = "request validation failed"
	MsgTooManyAttempts      = "too many attempts; retry later"
)
