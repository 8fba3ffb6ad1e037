// Command servemain stands in for snapmove's main.go in the plugin loading test while the
// repository root does not build: it serves the plugins exactly like `snapmove [flags]`.
package main

import "github.com/snapmove/snapmove/internal/plugin"

func main() { plugin.Serve() }
