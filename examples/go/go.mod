module shp

go 1.19
