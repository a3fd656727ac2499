package projections

import "slices"

// FoldedTypes lists the event types the bulk path folds, sorted.
func FoldedTypes() []string {
	var types []string
	for typ := range folds {
		types = append(types, typ)
	}
	slices.Sort(types)
	return types
}

// HandledTypes lists the event types the inline path handles, sorted.
func HandledTypes() []string {
	var types []string
	for typ := range handlers {
		types = append(types, typ)
	}
	slices.Sort(types)
	return types
}
