variable "region" {
  type    = string
  default = "eu"
}
data "coder_parameter" "size" {
  name    = "size"
  type    = "number"
  default = 2
  validation {
    min = 1
    max = 8
  }
}
data "coder_workspace_tags" "t" {
  tags = {
    "region" = var.region
    "big"    = data.coder_parameter.size.value > 4 ? "yes" : "no"
  }
}
