"""(family not implemented yet)"""
