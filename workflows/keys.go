package workflows

// recentKeys remembers the last window keys, oldest evicted first.
type recentKeys struct {
	window int
	order  []string
	seen   map[string]struct{}
}

func newRecentKeys(window int, carried []string) *recentKeys {
	if window < 1 {
		window = 1
	}
	r := &recentKeys{window: window, seen: map[string]struct{}{}}
	for _, k := range carried {
		r.add(k)
	}
	return r
}

// add remembers k and reports false if it was already remembered.
func (r *recentKeys) add(k string) bool {
	if _, dup := r.seen[k]; dup {
		return false
	}
	r.seen[k] = struct{}{}
	r.order = append(r.order, k)
	if len(r.order) > r.window {
		delete(r.seen, r.order[0])
		r.order[0] = ""
		r.order = r.order[1:]
	}
	return true
}

func (r *recentKeys) list() []string { return append([]string(nil), r.order...) }
