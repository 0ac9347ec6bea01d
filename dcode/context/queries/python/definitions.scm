(function_definition) @definition.function
(class_definition) @definition.class
(decorated_definition) @wrapper
