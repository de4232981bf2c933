module podcert.dev/mldsavectors

go 1.27
