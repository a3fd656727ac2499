package http_test

import (
	"regexp"
	"strings"
	"testing"
)

// numberedLine is a line that Markdown viewers (Swagger UI, Redoc) render
// as an item of a numbered list: a number and a full stop at its start.
var numberedLine = regexp.MustCompile(`^\s*\d+\.(\s|$)`)

// TestOpenAPIDescriptionsHaveNoAccidentalLists: a wrapped sentence whose
// line begins with "422." turns into a numbered list in both viewers.
func TestOpenAPIDescriptionsHaveNoAccidentalLists(t *testing.T) {
	t.Parallel()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{"info": c.doc.Info.Description}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			texts[method+" "+path] = op.Description
			for status, r := range op.Responses.Map() {
				if r.Value != nil && r.Value.Description != nil {
					texts[method+" "+path+" "+status] = *r.Value.Description
				}
			}
		}
	}
	for name, s := range c.doc.Components.Schemas {
		if s.Value != nil {
			texts["schema "+name] = s.Value.Description
		}
	}
	for name, r := range c.doc.Components.Responses {
		if r.Value != nil && r.Value.Description != nil {
			texts["response "+name] = *r.Value.Description
		}
	}
	for _, p := range c.doc.Components.Parameters {
		if p.Value != nil {
			texts["parameter "+p.Value.Name] = p.Value.Description
		}
	}
	for where, text := range texts {
		for _, line := range strings.Split(text, "\n") {
			if numberedLine.MatchString(line) {
				t.Errorf("%s: the line %q renders as a numbered list item; rewrap it", where, line)
			}
		}
	}
}
