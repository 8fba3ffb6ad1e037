// sbom writes the software bill of materials of a Go binary as SPDX 2.3 JSON: the main
// module and every module linked into it, with its version, checksum (go.sum's h1: hash)
// and package URL, read from the build information the Go toolchain embeds in the binary
// (debug/buildinfo). What `go version -m BINARY` prints, in the format SBOM tools read.
//
//	usage: sbom -name NAME -version V BINARY > NAME.spdx.json
package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

type document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      creationInfo   `json:"creationInfo"`
	Packages          []pkg          `json:"packages"`
	Relationships     []relationship `json:"relationships"`
}

type creationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type pkg struct {
	Name             string     `json:"name"`
	SPDXID           string     `json:"SPDXID"`
	VersionInfo      string     `json:"versionInfo"`
	DownloadLocation string     `json:"downloadLocation"`
	FilesAnalyzed    bool       `json:"filesAnalyzed"`
	Checksums        []checksum `json:"checksums,omitempty"`
	ExternalRefs     []extRef   `json:"externalRefs,omitempty"`
	Comment          string     `json:"comment,omitempty"`
}

type checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type extRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

func main() {
	name := flag.String("name", "snapmove", "the document's and the binary's name")
	version := flag.String("version", "", "the binary's version (default: its main module's)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: sbom -name NAME -version V BINARY")
		os.Exit(2)
	}
	if err := write(os.Stdout, flag.Arg(0), *name, *version); err != nil {
		fmt.Fprintln(os.Stderr, "sbom:", err)
		os.Exit(1)
	}
}

func write(w io.Writer, path, name, version string) error {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the build information of %s: %w", path, err)
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(bin)
	if version == "" {
		version = bi.Main.Version
	}
	doc := document{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT", Name: name + "-" + version,
		DocumentNamespace: fmt.Sprintf("https://github.com/snapmove/snapmove/sbom/%s-%s-%s", name, version, hex.EncodeToString(sum[:8])),
		CreationInfo:      creationInfo{Created: time.Now().UTC().Format(time.RFC3339), Creators: []string{"Tool: snapmove-hack-tools-sbom", "Tool: " + bi.GoVersion}},
	}
	settings := []string{"built with " + bi.GoVersion}
	for _, s := range bi.Settings {
		settings = append(settings, s.Key+"="+s.Value)
	}
	doc.Packages = append(doc.Packages, pkg{
		Name: name, SPDXID: "SPDXRef-Binary", VersionInfo: version, DownloadLocation: "NOASSERTION",
		Checksums: []checksum{{Algorithm: "SHA256", ChecksumValue: hex.EncodeToString(sum[:])}},
		Comment:   strings.Join(settings, "; "),
	})
	doc.Relationships = append(doc.Relationships, relationship{"SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Binary"})
	add := func(i int, path, version, h1 string) {
		id := fmt.Sprintf("SPDXRef-Module-%d", i)
		p := pkg{Name: path, SPDXID: id, VersionInfo: version, DownloadLocation: "https://proxy.golang.org/" + path + "/@v/" + version + ".zip",
			ExternalRefs: []extRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + path + "@" + version}}}
		if h1 != "" {
			p.Comment = "go.sum " + h1
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, relationship{"SPDXRef-Binary", "CONTAINS", id})
	}
	add(0, bi.Main.Path, bi.Main.Version, bi.Main.Sum)
	for i, d := range bi.Deps {
		if d.Replace != nil { // what is linked is the replacement
			add(i+1, d.Replace.Path, d.Replace.Version, d.Replace.Sum)
			continue
		}
		add(i+1, d.Path, d.Version, d.Sum)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
