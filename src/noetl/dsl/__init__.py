"""noetl.dsl"""
