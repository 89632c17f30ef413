module github.com/vsocklab/vsocklab

go 1.26

require github.com/stretchr/testify v1.12.1

require (
	github.com/hashicorp/yamux v0.1.2 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
