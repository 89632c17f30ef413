#!/bin/sh
# Draws the README's pictures of the two seed incidents into docs/img/:
# seed 003's resume matrix and seed 000's wedged stdout and its credit.
# Run from the repository's root: sh scripts/readme-pictures.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run ./cmd/vsocklab replay --plot "$tmp" testdata/incidents/slow-resume.trace testdata/incidents/stdout-wedge.trace >/dev/null
mkdir -p docs/img
for p in slow-resume-resume wedge-ch50-6.12.68-notimeout-64kib-stdout wedge-ch50-6.12.68-notimeout-64kib-credit; do
	cp "$tmp/$p.png" docs/img/
done
